"""AQLM checkpoints run on this CPU through the real aqlm package: the tiny Llama written here
in AQLM's Hugging Face layout (random codes, codebooks and scales) loads through
`martlet.load_model`, computes what a plain model holding its weights (decoded here, without
aqlm) computes, generates, saves and loads again, and trains a LoRA adapter (QLoRA, in Python
and through `martlet sft`); `--quant-method aqlm` at load or export time, and a missing
package, are refused clearly."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import martlet
import pytest
import torch
from martlet.errors import ConfigError, MartletError, MissingDependencyError
from martlet_sdk.contracts import ModelLoaderContract, QuantizerContract
from martlet_sdk.tiny import tiny_model, tiny_tokenizer
from safetensors.torch import load_file, save_file

#: the contract's tiny Llama: input widths that are multiples of every group size used here
SHAPE = {"hidden_size": 128, "intermediate_size": 256, "num_attention_heads": 4}
QUANTIZED = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
#: AQLM configurations: (num_codebooks, nbits_per_codebook, in_group_size, out_group_size);
#: 1x16 and 2x8 are the published ones (2 bits per weight), 2x8 ran aqlm's numba CPU kernel
CONFIGS = {"1x16": (1, 16, 8, 1), "2x8": (2, 8, 8, 1), "1x8-out2": (1, 8, 4, 2)}
PLUGINS = ("accel", "hf", "aqlm", "peft")


class TestAqlmQuantizer(QuantizerContract):
    @pytest.fixture
    def plugin(self):
        return "aqlm"

    @pytest.fixture
    def record_name(self):
        return "aqlm"


class TestAqlmLoader(ModelLoaderContract):
    @pytest.fixture
    def plugin(self):
        return "aqlm"

    @pytest.fixture
    def record_name(self):
        return "aqlm"


# ------------------------------------------------- AQLM's layout, written and decoded here


def signed(codes: torch.Tensor, nbits: int) -> torch.Tensor:
    """Codes ``0 .. 2^nbits - 1`` as AQLM stores them: two's complement in int8 / int16."""
    dtype = torch.int8 if nbits <= 8 else torch.int16
    return torch.where(codes >= 2 ** (nbits - 1), codes - 2**nbits, codes).to(dtype)


def decode(codes: torch.Tensor, codebooks: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """The ``[out, in]`` float32 weight: the block of output group ``o`` and input group ``i``
    is ``scales[o] * sum_c codebooks[c, codes[o, i, c]]``."""
    books, size, out_group, in_group = codebooks.shape
    index = codes.long() % size  # the stored int8 / int16 read back as unsigned
    out_groups, in_groups, _ = index.shape
    blocks = sum(codebooks[c].float()[index[:, :, c]] for c in range(books))  # [O, I, og, ig]
    blocks = blocks * scales.float().view(out_groups, 1, 1, 1)
    return blocks.permute(0, 2, 1, 3).reshape(out_groups * out_group, in_groups * in_group)


def test_decoding_here_reads_the_layout():
    """One hand-built layer: 2 codebooks of 4 vectors, output groups of 2, input groups of 3."""
    codebooks = torch.arange(2 * 4 * 2 * 3, dtype=torch.float32).view(2, 4, 2, 3)
    codes = signed(torch.tensor([[[1, 3], [2, 0]]]), 2)  # 1 output group, 2 input groups
    weight = decode(codes, codebooks, torch.tensor([2.0]).view(1, 1, 1, 1))
    first = 2 * (codebooks[0, 1] + codebooks[1, 3])  # [2, 3]: rows 0-1, inputs 0-2
    second = 2 * (codebooks[0, 2] + codebooks[1, 0])
    assert torch.equal(weight, torch.cat([first, second], dim=1))


def write_aqlm_checkpoint(folder: Path, config: str, *, seed: int = 0, tied: bool = False):
    """The tiny Llama as AQLM's ``convert_to_hf.py`` writes a checkpoint: every decoder linear
    layer as ``codes``/``codebooks``/``scales`` (random, float16), the other weights in
    float16 and listed in ``linear_weights_not_to_quantize`` by parameter name."""
    books, nbits, in_group, out_group = CONFIGS[config]
    tokenizer = tiny_tokenizer()
    model = tiny_model(seed=seed, tokenizer=tokenizer, tie_word_embeddings=tied, **SHAPE)
    generator = torch.Generator().manual_seed(seed + 1)
    tensors, kept = {}, []
    for name, tensor in model.state_dict().items():
        base, _, leaf = name.rpartition(".")
        if leaf == "weight" and base.rsplit(".", 1)[-1] in QUANTIZED:
            out_f, in_f = tensor.shape
            size = 2**nbits
            codes = torch.randint(
                0, size, (out_f // out_group, in_f // in_group, books), generator=generator
            )
            tensors[f"{base}.codes"] = signed(codes, nbits)
            vectors = torch.randn(books, size, out_group, in_group, generator=generator)
            tensors[f"{base}.codebooks"] = (vectors * 0.03 / books**0.5).half()
            scales = 0.5 + torch.rand(out_f // out_group, 1, 1, 1, generator=generator)
            tensors[f"{base}.scales"] = scales.half()
        elif not (tied and name == "lm_head.weight"):
            tensors[name] = tensor.detach().half().contiguous()
            kept.append(name)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    values = model.config.to_dict()
    values["torch_dtype"] = "float16"
    values.pop("dtype", None)
    values["quantization_config"] = {
        "quant_method": "aqlm",
        "in_group_size": in_group,
        "out_group_size": out_group,
        "num_codebooks": books,
        "nbits_per_codebook": nbits,
        "linear_weights_not_to_quantize": kept,
    }
    (folder / "config.json").write_text(json.dumps(values))
    tokenizer.save_pretrained(str(folder))
    model.generation_config.save_pretrained(str(folder))
    return folder


def dequantized_model(folder: Path):
    """A plain float32 Llama holding the checkpoint's weights, the AQLM ones decoded here."""
    from transformers import AutoConfig, AutoModelForCausalLM

    tensors = load_file(str(folder / "model.safetensors"))
    config = AutoConfig.from_pretrained(folder)
    del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    state = model.state_dict()
    for name in state:
        base = name[: -len(".weight")]
        if f"{base}.codes" in tensors:
            state[name] = decode(
                tensors[f"{base}.codes"], tensors[f"{base}.codebooks"], tensors[f"{base}.scales"]
            )
        elif name in tensors:
            state[name] = tensors[name].float()
    model.load_state_dict(state)
    if config.tie_word_embeddings:
        model.tie_weights()
    return model.eval()


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture
def manager(martlet_manager):
    return martlet_manager(*PLUGINS)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """``checkpoint(config, tied=False)``: an AQLM folder of the tiny Llama (written once)."""
    made = {}

    def make(config: str, *, tied: bool = False) -> Path:
        if (config, tied) not in made:
            folder = tmp_path_factory.mktemp(f"aqlm-{config}{'-tied' if tied else ''}")
            made[config, tied] = write_aqlm_checkpoint(folder, config, tied=tied)
        return made[config, tied]

    return make


@pytest.fixture(scope="module")
def ids():
    return torch.randint(3, 200, (2, 16), generator=torch.Generator().manual_seed(1))


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits.float()


def _relative(a, b):
    return float((a - b).norm() / b.norm())


def _aqlm_layers(model):
    from aqlm import QuantizedLinear

    return [n for n, m in model.named_modules() if isinstance(m, QuantizedLinear)]


# ------------------------------------------------------------------------- loading, outputs


@pytest.mark.parametrize("config", list(CONFIGS))
def test_a_checkpoint_computes_what_its_dequantized_weights_compute(
    manager, checkpoint, ids, config
):
    folder = checkpoint(config)
    model, tokenizer = martlet.load_model(str(folder), torch_dtype="float32")
    assert len(_aqlm_layers(model)) == 2 * len(QUANTIZED), "every decoder linear layer is AQLM"
    assert type(model.lm_head) is torch.nn.Linear, "the output head stays unquantized"
    assert tokenizer is not None and len(tokenizer) == model.config.vocab_size
    plain = dequantized_model(folder)
    reference = _logits(plain, ids)
    assert _relative(_logits(model, ids), reference) < 1e-5
    # again (aqlm's numba kernel gave other numbers each time), and for 3 tokens (aqlm's
    # matrix-vector path: at most 6)
    assert _relative(_logits(model, ids), reference) < 1e-5
    assert _relative(_logits(model, ids[:1, :3]), _logits(plain, ids[:1, :3])) < 1e-5


def test_the_input_gradient_is_the_dequantized_model_s(manager, checkpoint, ids):
    """What LoRA layers below an AQLM layer learn from (aqlm's CPU backward failed on 2x8)."""
    folder = checkpoint("2x8")
    model, _ = martlet.load_model(str(folder), torch_dtype="float32")
    plain = dequantized_model(folder)
    grads = []
    for m in (model, plain):
        embeds = plain.model.embed_tokens(ids).detach().requires_grad_(True)
        m(inputs_embeds=embeds).logits.square().mean().backward()
        grads.append(embeds.grad)
    assert _relative(grads[0], grads[1]) < 1e-5


def test_it_generates_as_the_dequantized_model_does(manager, checkpoint, ids):
    folder = checkpoint("1x16")
    model, _ = martlet.load_model(str(folder), torch_dtype="float32")
    prompt = ids[:1, :6]
    out = model.generate(prompt, max_new_tokens=6, min_new_tokens=6, do_sample=False)
    assert out.shape == (1, 12)
    expected = dequantized_model(folder).generate(
        prompt, max_new_tokens=6, min_new_tokens=6, do_sample=False
    )
    assert torch.equal(out, expected)
    # the cached decode is the same as running the whole sequence again
    with torch.no_grad():
        assert int(model(input_ids=out[:, :-1]).logits[0, -1].argmax()) == int(out[0, -1])


def test_martlet_infer_answers_from_the_folder(martlet_manager, martlet_cli, checkpoint):
    martlet_manager(*PLUGINS, "serve", "engine-pt")
    folder = checkpoint("2x8")
    result = martlet_cli("infer", "--model", str(folder), "--query", "Hi", "--max-new-tokens", "4")
    assert result.exit_code == 0, result.stderr[-3000:]
    assert result.stdout.strip()


def test_bfloat16_loads_compute_in_bfloat16(manager, checkpoint, ids):
    folder = checkpoint("2x8")
    model, _ = martlet.load_model(str(folder), torch_dtype="bfloat16")
    layer = model.model.layers[0].mlp.down_proj
    assert layer.codebooks.dtype == torch.bfloat16 and layer.codes.dtype == torch.int8
    logits = _logits(model, ids)
    assert torch.isfinite(logits).all()
    assert _relative(logits, _logits(dequantized_model(folder), ids)) < 0.05


def test_saved_after_running_it_loads_back_the_same(manager, checkpoint, ids, tmp_path):
    """aqlm's CPU kernel permuted 8-bit codes in place: a save after a forward was broken."""
    model, tokenizer = martlet.load_model(str(checkpoint("2x8")), torch_dtype="float32")
    first = _logits(model, ids)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    saved = load_file(str(tmp_path / "model.safetensors"))
    original = load_file(str(checkpoint("2x8") / "model.safetensors"))
    name = "model.layers.0.mlp.down_proj.codes"
    assert torch.equal(saved[name], original[name])
    again, _ = martlet.load_model(str(tmp_path), torch_dtype="float32")
    assert _relative(_logits(again, ids), first) < 1e-6


def test_a_head_tied_to_the_embeddings_stays_unquantized(manager, checkpoint, ids):
    folder = checkpoint("1x16", tied=True)
    model, _ = martlet.load_model(str(folder), torch_dtype="float32")
    assert type(model.lm_head) is torch.nn.Linear
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert _relative(_logits(model, ids), _logits(dequantized_model(folder), ids)) < 1e-5


def test_the_hf_loader_alone_is_refused_or_right(manager, checkpoint, ids):
    """transformers 5 alone makes lm_head an AQLM layer with random codebooks: that load is
    refused, saying why; should transformers fix it, the load must be right instead."""
    folder = checkpoint("1x16")
    try:
        model, _ = martlet.load_model(str(folder), loader="hf", torch_dtype="float32")
    except MartletError as exc:
        assert "lm_head" in str(exc) and "--model-loader aqlm" in exc.fix
    else:
        assert _relative(_logits(model, ids), _logits(dequantized_model(folder), ids)) < 1e-5


# ------------------------------------------------------------------------------ training


def _lora(model, **values):
    from martlet.manager import get_manager

    record = get_manager().registry.get("tuners", "lora")
    options = asdict(record.options_class()())
    options.update(lora_rank=8, target_modules=["all-linear"], lora_dropout=0.0, **values)
    return record.load()().prepare(model, SimpleNamespace(learning_rate=1e-2, **options))


def test_lora_trains_on_the_aqlm_layers(manager, checkpoint, ids):
    from peft.tuners.lora.aqlm import AqlmLoraLinear

    model, _ = martlet.load_model(str(checkpoint("2x8")), torch_dtype="float32")
    codes = model.model.layers[0].mlp.down_proj.codes.clone()
    model = _lora(model)
    adapted = [n for n, m in model.named_modules() if isinstance(m, AqlmLoraLinear)]
    assert len(adapted) == 2 * len(QUANTIZED), "LoRA adapts every AQLM layer (all-linear)"
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    model.train()
    losses = []
    for _ in range(6):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        # the first layer learns through every AQLM layer's backward pass above it
        first = model.base_model.model.model.layers[0].self_attn.q_proj.lora_B.default.weight
        assert first.grad is not None and first.grad.abs().sum() > 0
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0], f"the loss did not go down: {losses}"
    assert torch.equal(model.base_model.model.model.layers[0].mlp.down_proj.base_layer.codes, codes)


def test_martlet_sft_trains_lora_on_the_checkpoint(
    martlet_manager, martlet_cli, checkpoint, ids, tmp_path
):
    martlet_manager(*PLUGINS, "train", "data")
    out = tmp_path / "run"
    result = martlet_cli(
        "sft",
        "--model", str(checkpoint("1x16")),
        "--tuner", "lora",
        "--dataset", "sample-sft#16",
        "--per-device-train-batch-size", "16",
        "--max-steps", "4",
        "--learning-rate", "1e-2",
        "--no-quant-report",
        "--output-dir", str(out),
        "--disable-progress-bar",
        "--logging-steps", "1",
        "--seed", "0",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr[-3000:] + result.stdout[-2000:]
    losses = [
        json.loads(line)["loss"]
        for line in (out / "metrics.jsonl").read_text().splitlines()
        if "loss" in json.loads(line)
    ]
    assert len(losses) == 4 and losses[-1] < losses[0], losses
    # the run loads back on the AQLM base, the adapter on its layers
    model, _, _ = martlet.load_run(out, torch_dtype="float32")
    assert len(_aqlm_layers(model)) == 2 * len(QUANTIZED)
    assert torch.isfinite(_logits(model, ids)).all()
    # no unquantized weights to merge into: a clear error, not PEFT's NotImplementedError
    martlet_manager(*PLUGINS, "train", "data", "export")
    merged = tmp_path / "merged"
    result = martlet_cli(
        "export", "--adapters", str(out), "--merge-lora", "--output-dir", str(merged)
    )
    assert result.exit_code == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "cannot be merged into this model's quantized layers" in result.stderr
    assert "--adapters instead of --merge-lora" in result.stderr


# ------------------------------------------------------------------------------ refusals


@pytest.mark.parametrize("stage, when", [("load", "at load time"), ("export", "at export time")])
def test_quantizing_with_aqlm_is_refused_before_anything_loads(manager, stage, when):
    from martlet.quantize import chosen

    with pytest.raises(ConfigError, match=f"the aqlm quantizer does not work {when}") as e:
        chosen("aqlm", 2, stage=stage, cuda=False)
    assert "it works on checkpoints" in e.value.why


def test_the_commands_refuse_quant_method_aqlm(martlet_manager, martlet_cli, checkpoint, tmp_path):
    martlet_manager(*PLUGINS, "export", "hqq")
    result = martlet_cli(
        "export", "--model", str(checkpoint("2x8")), "--quant-method", "aqlm",
        "--output-dir", str(tmp_path / "out"),
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "the aqlm quantizer does not work at export time" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_without_the_plugin_it_names_the_package(martlet_manager):
    from martlet.providers import provider
    from martlet.quantize import chosen

    # not installed: "it is provided by martlet-aqlm: pip install martlet-aqlm"
    assert provider("quantizers", "aqlm") == "martlet-aqlm"
    martlet_manager("hf")  # installed here, but left out
    with pytest.raises(MartletError) as e:
        chosen("aqlm", None, stage="load")
    assert "martlet-aqlm" in str(e.value) and "aqlm" in e.value.fix


def test_without_aqlm_it_says_what_to_install(manager, checkpoint, monkeypatch):
    monkeypatch.setitem(sys.modules, "aqlm", None)  # `import aqlm` raises ImportError
    with pytest.raises(MissingDependencyError, match="the aqlm package is not installed") as e:
        martlet.load_model(str(checkpoint("2x8")), torch_dtype="float32")
    assert 'pip install "aqlm[cpu]>=1.1.7,<1.2"' in e.value.fix
    assert "pip install martlet-aqlm" in e.value.fix


def test_a_config_without_aqlm_layers_is_refused(manager, tmp_path):
    from martlet_aqlm.quantizer import AqlmQuantizer

    with pytest.raises(MartletError, match="loaded without quantized layers"):
        AqlmQuantizer().prepare_prequantized(tiny_model(**SHAPE))


def test_the_loader_refuses_what_it_cannot_load(manager, checkpoint, tmp_path):
    from martlet_aqlm.loader import AqlmLoader

    loader = AqlmLoader()
    folder = str(checkpoint("2x8"))
    assert not loader.can_load(folder), "the hf loader claims folders; this one is named"
    with pytest.raises(ConfigError, match="quantized with aqlm already"):
        loader.load(folder, quantization_config=object())
    with pytest.raises(ConfigError, match="sequence classification head"):
        loader.load(folder, task_type="seq_cls")
    plain = tmp_path / "plain"
    tiny_model(**SHAPE).save_pretrained(plain)
    with pytest.raises(ConfigError, match="is not an AQLM checkpoint"):
        loader.load(str(plain))


def test_loader_and_quantizer_modules_stay_light():
    """The loader is asked ``can_load`` on every model load that names none."""
    code = (
        "import sys, martlet_aqlm.loader, martlet_aqlm.quantizer; "
        "print(sorted(m for m in ('torch', 'transformers', 'aqlm') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
