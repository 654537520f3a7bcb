"""`martlet export --quant-method gptq` quantizes the tiny Llama with gptqmodel on this CPU and
writes the GPTQ (v1) checkpoint transformers, vLLM and SGLang read: it loads back through
`martlet.load_model` close to the original at every width, its packed weights dequantize
(independently of gptqmodel) to what the loaded model computes, an auto-gptq checkpoint of the
same weights loads to the same outputs, and bad requests are refused before anything loads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import martlet
import pytest
import torch
from martlet.errors import ConfigError, MartletError
from martlet_gptq.options import GptqOptions
from martlet_gptq.quantizer import GptqQuantizer, check_bits
from martlet_gptqmodel.testing import (
    QUANTIZED,
    calibration,
    logits,
    lora_losses,
    quantized_layers,
    relative,
    tiny_source,
)
from martlet_sdk.contracts import QuantizerContract
from martlet_sdk.tiny import tiny_model, tiny_tokenizer
from safetensors import safe_open
from safetensors.torch import load_file, save_file

#: the largest relative logit error allowed at a width (the SDK contract's bounds)
BOUNDS = {2: 0.9, 3: 0.6, 4: 0.45, 8: 0.08}


class TestGptqQuantizer(QuantizerContract):
    @pytest.fixture
    def plugin(self):
        return "gptq"

    @pytest.fixture
    def record_name(self):
        return "gptq"

    @pytest.fixture
    def widths(self):
        # the export check takes the first width; the others are checked below, 2-bit with
        # the smaller groups it needs on a random model
        return [4]


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """The tiny Llama saved as a folder, loaded back in float32, and its logits on IDS."""
    return tiny_source(tmp_path_factory.mktemp("gptq-source"))


@pytest.fixture(scope="module")
def export(source, tmp_path_factory):
    """``export(bits, **options)``: the tiny model's GPTQ folder (written once per request)."""
    _, model, tokenizer, _, _ = source
    made = {}

    def make(bits, **options):
        key = (bits, tuple(sorted(options.items())))
        if key not in made:
            out = tmp_path_factory.mktemp(f"gptq-{bits}bit")
            GptqQuantizer().export(
                model, tokenizer, str(out), bits, calibration=calibration(tokenizer), **options
            )
            made[key] = out
        return made[key]

    return make


# ------------------------------------------------------------------- quality and layout


@pytest.mark.parametrize("bits, options", [(2, {"group_size": 32}), (3, {}), (4, {}), (8, {})])
def test_each_width_loads_back_close_to_the_original(source, export, bits, options):
    _, _, _, ids, reference = source
    model, _ = martlet.load_model(str(export(bits, **options)), torch_dtype="float32")
    assert len(quantized_layers(model)) == 2 * len(QUANTIZED), "every decoder linear layer is GPTQ"
    error = relative(logits(model, ids), reference)
    assert error <= BOUNDS[bits], f"{bits}-bit logits {error:.3f} off (bound {BOUNDS[bits]})"


def test_lora_trains_on_a_gptq_checkpoint(martlet_manager, source, export):
    """LoRA on a GPTQ checkpoint's layers (QLoRA on GPTQ, as ms-swift offers): PEFT wraps
    gptqmodel's layers (PEFT's gptqmodel check answers for itself once the checkpoint's load
    imported gptqmodel: `martlet_gptqmodel.peft_guard`), only the adapter trains and the loss
    falls."""
    martlet_manager("hf", "peft", "gptq")
    _, _, _, ids, _ = source
    model, _ = martlet.load_model(str(export(4)), torch_dtype="float32")
    model, losses = lora_losses(model, ids)
    wrapped = [m for m in model.modules() if type(m).__name__ == "GPTQLoraLinear"]
    assert len(wrapped) == 2 * len(QUANTIZED), "PEFT wraps every GPTQ layer"
    assert losses[-1] < losses[0], f"the loss did not go down: {losses}"


def test_the_checkpoint_is_laid_out_as_transformers_vllm_and_sglang_read_it(source, export):
    folder, _, tokenizer, _, _ = source
    out = export(4)
    config = json.loads((out / "config.json").read_text())
    qc = config["quantization_config"]
    assert qc["quant_method"] == "gptq" and qc["checkpoint_format"] == "gptq"
    assert (qc["bits"], qc["group_size"], qc["desc_act"], qc["sym"]) == (4, 128, False, True)
    assert qc["lm_head"] is False
    # auto-gptq's file, read by older loaders (and vLLM when config.json has no section)
    legacy = json.loads((out / "quantize_config.json").read_text())
    assert {k: legacy[k] for k in ("bits", "group_size", "desc_act", "sym", "quant_method")} == {
        "bits": 4,
        "group_size": 128,
        "desc_act": False,
        "sym": True,
        "quant_method": "gptq",
    }
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        names = set(f.keys())
        for layer in range(2):
            for proj in QUANTIZED:
                base = next(
                    n
                    for n in names
                    if n.endswith(f"layers.{layer}.mlp.{proj}.qweight")
                    or n.endswith(f"layers.{layer}.self_attn.{proj}.qweight")
                )[:-8]
                assert f"{base}.weight" not in names, "no unquantized copy is left"
                qweight, qzeros = f.get_tensor(f"{base}.qweight"), f.get_tensor(f"{base}.qzeros")
                scales, g_idx = f.get_tensor(f"{base}.scales"), f.get_tensor(f"{base}.g_idx")
                out_f = scales.shape[1]
                in_f = g_idx.numel()
                assert qweight.dtype == torch.int32 and qweight.shape == (in_f * 4 // 32, out_f)
                assert qzeros.dtype == torch.int32 and qzeros.shape == (in_f // 128, out_f // 8)
                assert scales.dtype == torch.float16 and scales.shape == (in_f // 128, out_f)
                # without act-order the groups are consecutive columns (what vLLM assumes)
                assert torch.equal(g_idx.long(), torch.arange(in_f) // 128)
    # the tokenizer and the generation settings are the model's own
    assert (out / "tokenizer.json").is_file()
    again = martlet.load_tokenizer(str(out))
    messages = [{"role": "user", "content": "hi"}]
    assert again.apply_chat_template(messages, tokenize=False) == tokenizer.apply_chat_template(
        messages, tokenize=False
    )
    assert json.loads((out / "generation_config.json").read_text()) == json.loads(
        (folder / "generation_config.json").read_text()
    )


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_its_packed_weights_are_what_the_loaded_model_computes(source, export, bits):
    """Unpacked here without gptqmodel (GPTQ v1: ``qweight`` packs 32 / bits input rows per
    int32, ``qzeros`` packs outputs and stores zero - 1, ``W = scale * (q - zero)``), the
    weights give the loaded model's logits: the layout is the standard one."""
    folder, _, _, ids, _ = source
    out = export(bits, **({"group_size": 32} if bits == 2 else {}))
    quantized, _ = martlet.load_model(str(out), torch_dtype="float32")
    plain = dequantized_gptq(folder, out / "model.safetensors", bits)
    assert relative(logits(quantized, ids), logits(plain, ids)) < 0.02


def dequantized_gptq(folder: Path, weights: Path, bits: int):
    """The plain tiny model with the weights of a GPTQ (v1) file, dequantized."""
    tensors = load_file(str(weights))
    model, _ = martlet.load_model(str(folder), torch_dtype="float32")
    state = model.state_dict()
    for name, tensor in tensors.items():
        if name.endswith(".qweight"):
            base = name[: -len(".qweight")]
            q = _unpack_rows(tensor, bits)
            zeros = _unpack_cols(tensors[f"{base}.qzeros"], bits) + 1
            scales = tensors[f"{base}.scales"].float()
            g = tensors[f"{base}.g_idx"].long()
            state[f"{base}.weight"] = (scales[g] * (q - zeros[g]).float()).T.contiguous()
        elif not name.endswith((".qzeros", ".scales", ".g_idx")):
            state[name] = tensor.float()
    model.load_state_dict(state)
    return model.eval()


def _unpack_rows(packed, bits):
    """``[in * bits / 32, out]`` int32 -> ``[in, out]``: row ``r`` of word ``w`` at bit
    ``bits * (r % per_word)``."""
    per = 32 // bits
    shifts = (torch.arange(per, dtype=torch.int32) * bits).view(1, -1, 1)
    return ((packed.unsqueeze(1) >> shifts) & ((1 << bits) - 1)).reshape(-1, packed.shape[1])


def _unpack_cols(packed, bits):
    """``[groups, out * bits / 32]`` int32 -> ``[groups, out]``."""
    per = 32 // bits
    shifts = (torch.arange(per, dtype=torch.int32) * bits).view(1, 1, -1)
    return ((packed.unsqueeze(-1) >> shifts) & ((1 << bits) - 1)).reshape(packed.shape[0], -1)


def test_act_order_and_asymmetric_groups(source, export):
    """--desc-act writes act-order (``g_idx`` assigns each group its columns, in the order
    of the activations), --sym false zero points; both load back close to the original."""
    _, _, _, ids, reference = source
    out = export(4, desc_act=True, sym=False, group_size=32)
    qc = json.loads((out / "config.json").read_text())["quantization_config"]
    assert (qc["desc_act"], qc["sym"], qc["group_size"]) == (True, False, 32)
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        g_idx = f.get_tensor("model.layers.0.mlp.down_proj.g_idx").long()
    assert torch.equal(torch.bincount(g_idx), torch.full((256 // 32,), 32))
    model, _ = martlet.load_model(str(out), torch_dtype="float32")
    assert relative(logits(model, ids), reference) <= BOUNDS[4]


def test_an_auto_gptq_checkpoint_loads_to_the_same_outputs(source, export, tmp_path):
    """What auto-gptq 0.7 wrote: its own ``quantization_config`` in config.json (no gptqmodel
    fields), ``quantize_config.json``, float16 weights and its safetensors metadata."""
    _, _, _, ids, _ = source
    out = export(4)
    legacy = tmp_path / "auto-gptq"
    shutil.copytree(out, legacy)
    (legacy / "quant_log.csv").unlink(missing_ok=True)
    qc = {
        "bits": 4,
        "group_size": 128,
        "damp_percent": 0.01,
        "desc_act": False,
        "static_groups": False,
        "sym": True,
        "true_sequential": True,
        "model_name_or_path": None,
        "model_file_base_name": None,
        "quant_method": "gptq",
        "checkpoint_format": "gptq",
    }
    config = json.loads((out / "config.json").read_text())
    config["quantization_config"] = qc
    config["torch_dtype"] = "float16"
    config.pop("dtype", None)
    (legacy / "config.json").write_text(json.dumps(config))
    qc_file = dict(qc, model_name_or_path=str(legacy), model_file_base_name="model")
    (legacy / "quantize_config.json").write_text(json.dumps(qc_file))
    tensors = {
        k: v.half() if v.is_floating_point() else v
        for k, v in load_file(str(out / "model.safetensors")).items()
    }
    metadata = {"format": "pt", "auto_gptq_version": "0.7.1", "gptq_bits": "4"}
    metadata |= {"gptq_group_size": "128", "gptq_desc_act": "False"}
    metadata |= {"gptq_checkpoint_format": "gptq", "gptq_quant_method": "gptq"}
    save_file(tensors, str(legacy / "model.safetensors"), metadata=metadata)

    ours, _ = martlet.load_model(str(out), torch_dtype="float32")
    theirs, _ = martlet.load_model(str(legacy), torch_dtype="float32")
    assert len(quantized_layers(theirs)) == 2 * len(QUANTIZED)
    assert relative(logits(theirs, ids), logits(ours, ids)) < 1e-3
    # and it generates through martlet's engine path (greedy, a few tokens)
    generated = theirs.generate(ids[:1, :8], max_new_tokens=4, min_new_tokens=4, do_sample=False)
    assert generated.shape == (1, 12)


def test_martlet_export_writes_it_and_reports_perplexity(
    martlet_manager, martlet_cli, source, tmp_path
):
    folder, *_ = source
    martlet_manager("export", "hf", "data", "gptq")
    out = tmp_path / "exported"
    result = martlet_cli(
        "export",
        "--model",
        str(folder),
        "--quant-method",
        "gptq",
        "--quant-bits",
        "8",
        "--group-size",
        "64",
        "--dataset",
        "sample-sft",
        "--quant-n-samples",
        "4",
        "--output-type",
        "vllm",
        "--output-dir",
        str(out),
    )
    assert result.exit_code == 0, result.stderr[-3000:]
    assert "held-out perplexity" in result.stdout
    report = json.loads((out / "quantization.json").read_text())
    assert report["method"] == "gptq" and report["bits"] == 8
    assert report["perplexity"] < 1.05 * report["reference_perplexity"]
    qc = json.loads((out / "config.json").read_text())["quantization_config"]
    assert (qc["bits"], qc["group_size"]) == (8, 64)
    # --quant-n-samples reached the quantizer: each layer saw the tokens of the first 4 rows
    from martlet_export.calibration import calibration_rows

    tokens = sum(map(len, calibration_rows(["sample-sft"], source[2])(4)))
    log = (out / "quant_log.csv").read_text().splitlines()
    column = log[0].split(",").index("samples")
    assert {int(line.split(",")[column]) for line in log[1:]} == {tokens}


# ------------------------------------------------------------------------------ refusals


@pytest.mark.parametrize(
    "options, message",
    [
        ({"group_size": 100}, "--group-size must be one of -1, 16, 32"),
        ({"damp_percent": 0.0}, "--damp-percent must be between 0 and 1"),
        ({"damp_percent": 1.5}, "--damp-percent must be between 0 and 1"),
        ({"quant_n_samples": 0}, "--quant-n-samples must be a positive number"),
    ],
)
def test_bad_options_are_refused_before_anything_loads(options, message):
    with pytest.raises(ConfigError, match=message):
        GptqOptions(**options)


def test_bad_flags_are_refused_by_the_command(martlet_manager, martlet_cli, tmp_path):
    martlet_manager("export", "hf", "gptq")
    result = martlet_cli(
        "export", "--model", "m", "--quant-method", "gptq", "--quant-bits", "4",
        "--group-size", "100", "--output-dir", str(tmp_path / "o"),
    )  # fmt: skip
    assert result.exit_code != 0 and "--group-size must be one of" in result.stderr
    result = martlet_cli(
        "export", "--model", "m", "--quant-method", "gptq", "--quant-bits", "5",
        "--output-dir", str(tmp_path / "o"),
    )  # fmt: skip
    assert result.exit_code != 0 and "gptq cannot quantize to 5 bits" in result.stderr
    assert "Traceback" not in result.stderr
    result = martlet_cli(
        "export", "--model", "m", "--quant-method", "gptq", "--quant-bits", "4",
        "--output-type", "lmdeploy", "--output-dir", str(tmp_path / "o"),
    )  # fmt: skip
    assert result.exit_code != 0 and "lmdeploy does not load gptq exports" in result.stderr
    assert "vllm, sglang" in result.stderr


def test_unsupported_widths_are_refused():
    with pytest.raises(ConfigError, match="gptq cannot quantize to 5 bits"):
        check_bits(5)


def _narrow(hidden, intermediate):
    tokenizer = tiny_tokenizer()
    model = tiny_model(
        seed=0,
        tokenizer=tokenizer,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_attention_heads=4,
    )
    return model, tokenizer


def test_a_group_size_that_does_not_divide_a_layer_is_refused(tmp_path):
    model, tokenizer = _narrow(96, 192)  # 96 = 3 x 32: 64 and 128 do not divide it
    with pytest.raises(
        ConfigError, match="--group-size 64 does not divide the input width 96"
    ) as e:
        GptqQuantizer().export(
            model, tokenizer, str(tmp_path / "o"), 4, calibration=calibration(tokenizer),
            group_size=64,
        )  # fmt: skip
    assert "pass --group-size 32" in str(e.value)
    assert not (tmp_path / "o").exists(), "refused before anything was written"


def test_without_a_group_size_the_largest_that_divides_every_layer_is_used(tmp_path):
    model, tokenizer = _narrow(96, 192)
    GptqQuantizer().export(model, tokenizer, str(tmp_path), 4, calibration=calibration(tokenizer))
    qc = json.loads((tmp_path / "config.json").read_text())["quantization_config"]
    assert qc["group_size"] == 32


def test_3_bit_needs_input_widths_that_are_multiples_of_32(tmp_path):
    model, tokenizer = _narrow(48, 96)
    with pytest.raises(ConfigError, match="cannot pack 3-bit weights"):
        GptqQuantizer().export(
            model, tokenizer, str(tmp_path), 3, calibration=calibration(tokenizer)
        )


def test_without_calibration_data_it_says_what_to_pass(source, tmp_path):
    _, model, tokenizer, _, _ = source
    with pytest.raises(ConfigError, match="gptq needs calibration data") as e:
        GptqQuantizer().export(model, tokenizer, str(tmp_path), 4)
    assert "--dataset" in str(e.value)


def test_an_already_quantized_model_is_refused(source, export, tmp_path):
    _, _, tokenizer, _, _ = source
    quantized, _ = martlet.load_model(str(export(4)), torch_dtype="float32")
    with pytest.raises(ConfigError, match="already quantized"):
        GptqQuantizer().export(
            quantized, tokenizer, str(tmp_path), 4, calibration=calibration(tokenizer)
        )


def test_a_gptq_config_without_gptq_layers_is_refused(source):
    _, model, _, _, _ = source
    with pytest.raises(MartletError, match="loaded without quantized layers"):
        GptqQuantizer().prepare_prequantized(model)
