"""AWQ checkpoints load and run on this CPU through gptqmodel's torch kernels: one packed here
in AutoAWQ's GEMM layout (without gptqmodel) from the tiny Llama computes what its dequantized
weights compute; `martlet export --quant-method awq` quantizes on the CPU and writes that same
layout; bad requests are refused before anything loads."""

from __future__ import annotations

import json
from pathlib import Path

import martlet
import pytest
import torch
from martlet.errors import ConfigError, MartletError
from martlet_awq.options import AwqOptions
from martlet_awq.quantizer import AwqQuantizer, check_bits
from martlet_gptqmodel.testing import (
    QUANTIZED,
    TEXTS,
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

#: AutoAWQ's GEMM layout: nibble i of a packed word holds output column ORDER[i] of its 8
ORDER = [0, 2, 4, 6, 1, 3, 5, 7]


class TestAwqQuantizer(QuantizerContract):
    @pytest.fixture
    def plugin(self):
        return "awq"

    @pytest.fixture
    def record_name(self):
        return "awq"


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """The tiny Llama saved as a folder, loaded back in float32, and its logits on IDS."""
    return tiny_source(tmp_path_factory.mktemp("awq-source"))


def _awq_layers(model):
    return quantized_layers(model, "AWQuantLinear")


def _calibration(tokenizer):
    return calibration(tokenizer, TEXTS[:3])  # three texts: up to 12 rows


# ------------------------------------------------------ AutoAWQ's GEMM layout, packed here


def pack(values: torch.Tensor) -> torch.Tensor:
    """``[rows, out]`` integers 0..15 -> ``[rows, out / 8]`` int32 in AWQ's GEMM order."""
    rows, out = values.shape
    grouped = values.long().view(rows, out // 8, 8)[:, :, ORDER]
    words = (grouped << (torch.arange(8) * 4)).sum(-1)
    return torch.where(words >= 2**31, words - 2**32, words).to(torch.int32)


def unpack(words: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`pack`."""
    nibbles = (words.unsqueeze(-1) >> (torch.arange(8, dtype=torch.int32) * 4)) & 15
    values = torch.empty_like(nibbles)
    values[..., ORDER] = nibbles
    return values.reshape(words.shape[0], -1)


def round_to_nearest(weight: torch.Tensor, group: int):
    """A linear layer's ``[out, in]`` weight as AWQ stores it, asymmetric round-to-nearest
    per group of ``group`` inputs: ``(qweight, qzeros, scales)``."""
    w = weight.detach().float().T  # [in, out]
    grouped = w.reshape(-1, group, w.shape[1])  # [groups, group, out]
    low, high = grouped.amin(1), grouped.amax(1)
    scales = ((high - low).clamp(min=1e-5) / 15).half()
    zeros = torch.round(-low / scales.float()).clamp(0, 15)
    q = (torch.round(grouped / scales.float().unsqueeze(1)) + zeros.unsqueeze(1)).clamp(0, 15)
    return pack(q.reshape(w.shape)), pack(zeros), scales


def dequantize(qweight, qzeros, scales, group):
    """``[out, in]`` float32: ``(q - zero) * scale``, per group of inputs."""
    q, zeros = unpack(qweight).float(), unpack(qzeros).float()
    index = torch.arange(q.shape[0]) // group
    return ((q - zeros[index]) * scales.float()[index]).T.contiguous()


def write_awq_checkpoint(model, tokenizer, folder: Path, group: int) -> None:
    """The model as AutoAWQ writes a GEMM checkpoint: float16 weights, each decoder linear
    layer as ``qweight``/``qzeros``/``scales``, and AutoAWQ's ``quantization_config``."""
    tensors = {}
    for name, tensor in model.state_dict().items():
        base, _, leaf = name.rpartition(".")
        if leaf == "weight" and base.rsplit(".", 1)[-1] in QUANTIZED:
            qweight, qzeros, scales = round_to_nearest(tensor, group)
            tensors |= {f"{base}.qweight": qweight, f"{base}.qzeros": qzeros}
            tensors[f"{base}.scales"] = scales
        else:
            tensors[name] = tensor.detach().half().contiguous()
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    config = model.config.to_dict()
    config["torch_dtype"] = "float16"
    config.pop("dtype", None)
    config["quantization_config"] = {
        "quant_method": "awq",
        "zero_point": True,
        "group_size": group,
        "bits": 4,
        "version": "gemm",
        "modules_to_not_convert": None,
    }
    (folder / "config.json").write_text(json.dumps(config))
    tokenizer.save_pretrained(str(folder))


def dequantized_model(folder: Path, weights: Path, group: int):
    """The plain model with an AWQ file's weights, dequantized (float32)."""
    tensors = load_file(str(weights))
    model, _ = martlet.load_model(str(folder), torch_dtype="float32")
    state = model.state_dict()
    for name, tensor in tensors.items():
        if name.endswith(".qweight"):
            base = name[: -len(".qweight")]
            state[f"{base}.weight"] = dequantize(
                tensor, tensors[f"{base}.qzeros"], tensors[f"{base}.scales"], group
            )
        elif not name.endswith((".qzeros", ".scales")):
            state[name] = tensor.float()
    model.load_state_dict(state)
    return model.eval()


def test_the_packing_here_round_trips():
    values = torch.randint(0, 16, (6, 24))
    assert torch.equal(unpack(pack(values)), values)


@pytest.fixture(scope="module")
def handmade(source, tmp_path_factory):
    folder, model, tokenizer, _, _ = source
    out = tmp_path_factory.mktemp("autoawq-gemm")
    write_awq_checkpoint(model, tokenizer, out, group=64)
    return out


def test_an_autoawq_checkpoint_runs_on_the_cpu_as_its_dequantized_weights(source, handmade):
    folder, _, _, ids, reference = source
    quantized, _ = martlet.load_model(str(handmade), torch_dtype="float32")
    assert len(_awq_layers(quantized)) == 2 * len(QUANTIZED), "every decoder layer is AWQ"
    assert not any(
        isinstance(m, torch.nn.Linear) and n.rsplit(".", 1)[-1] in QUANTIZED
        for n, m in quantized.named_modules()
    )
    plain = dequantized_model(folder, handmade / "model.safetensors", 64)
    got = logits(quantized, ids)
    assert relative(got, logits(plain, ids)) < 0.02
    # and, 4-bit round-to-nearest, close to the original model
    assert relative(got, reference) < 0.45


def test_an_awq_checkpoint_generates_and_answers_through_martlet(source, handmade):
    """The loaded checkpoint decodes with a KV cache, as `martlet infer` drives it."""
    _, _, _, ids, _ = source
    model, tokenizer = martlet.load_model(str(handmade), torch_dtype="float32")
    out = model.generate(ids[:1, :6], max_new_tokens=5, min_new_tokens=5, do_sample=False)
    assert out.shape == (1, 11)
    # the cached decode is the same as running the whole sequence again
    with torch.no_grad():
        full = model(input_ids=out[:, :-1]).logits[0, -1].argmax()
    assert int(full) == int(out[0, -1])


def test_lora_trains_on_an_awq_checkpoint(martlet_manager, source, handmade):
    """LoRA on an AWQ checkpoint's layers: PEFT wraps gptqmodel's AWQ layers (its gptqmodel
    check answers for itself once the load imported gptqmodel), only the adapter trains and
    the loss falls."""
    martlet_manager("hf", "peft", "awq")
    _, _, _, ids, _ = source
    model, _ = martlet.load_model(str(handmade), torch_dtype="float32")
    model, losses = lora_losses(model, ids)
    wrapped = [m for m in model.modules() if type(m).__name__ == "AwqLoraLinear"]
    assert len(wrapped) == 2 * len(QUANTIZED), "PEFT wraps every AWQ layer"
    assert losses[-1] < losses[0], f"the loss did not go down: {losses}"


def test_half_precision_loads_run_too(handmade, source):
    _, _, _, ids, _ = source
    model, _ = martlet.load_model(str(handmade), torch_dtype="bfloat16")
    assert torch.isfinite(logits(model, ids)).all()


# -------------------------------------------------------------------------------- export


@pytest.fixture(scope="module")
def exported(source, tmp_path_factory):
    _, model, tokenizer, _, _ = source
    out = tmp_path_factory.mktemp("awq-export")
    AwqQuantizer().export(model, tokenizer, str(out), 4, calibration=_calibration(tokenizer))
    return out


def test_the_export_writes_autoawq_s_gemm_layout(source, exported):
    folder, _, _, ids, reference = source
    qc = json.loads((exported / "config.json").read_text())["quantization_config"]
    assert qc["quant_method"] == "awq" and qc["version"] == "gemm"
    assert (qc["bits"], qc["group_size"], qc["zero_point"]) == (4, 128, True)
    with safe_open(str(exported / "model.safetensors"), "pt") as f:
        names = set(f.keys())
        for name in (n for n in names if n.endswith(".qweight")):
            base = name[: -len(".qweight")]
            assert f"{base}.weight" not in names
            qweight, qzeros = f.get_tensor(name), f.get_tensor(f"{base}.qzeros")
            scales = f.get_tensor(f"{base}.scales")
            in_f, out_f = qweight.shape[0], scales.shape[1]
            assert qweight.dtype == torch.int32 and qweight.shape == (in_f, out_f // 8)
            assert qzeros.dtype == torch.int32 and qzeros.shape == (in_f // 128, out_f // 8)
            assert scales.dtype == torch.float16 and scales.shape == (in_f // 128, out_f)
        assert sum(n.endswith(".qweight") for n in names) == 2 * len(QUANTIZED)
    quantized, _ = martlet.load_model(str(exported), torch_dtype="float32")
    got = logits(quantized, ids)
    # unpacked here, the written weights are what the loaded model computes
    plain = dequantized_model(folder, exported / "model.safetensors", 128)
    assert relative(got, logits(plain, ids)) < 0.02
    assert relative(got, reference) < 0.45


def test_martlet_export_writes_it(martlet_manager, martlet_cli, source, tmp_path):
    folder, *_ = source
    martlet_manager("export", "hf", "data", "awq")
    out = tmp_path / "exported"
    result = martlet_cli(
        "export", "--model", str(folder), "--quant-method", "awq", "--group-size", "64",
        "--dataset", "sample-sft", "--quant-n-samples", "4", "--output-dir", str(out),
        "--quant-report", "false",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr[-3000:]
    assert "awq calibrates on 4 rows" in result.stderr  # too few: said so
    qc = json.loads((out / "config.json").read_text())["quantization_config"]
    assert (qc["quant_method"], qc["bits"], qc["group_size"]) == ("awq", 4, 64)
    model, _ = martlet.load_model(str(out), torch_dtype="float32")
    assert len(_awq_layers(model)) == 2 * len(QUANTIZED)


# ------------------------------------------------------------------------------ refusals


@pytest.mark.parametrize(
    "options, message",
    [
        ({"group_size": 256}, "--group-size must be one of 32, 64, 128"),
        ({"group_size": -1}, "--group-size must be one of 32, 64, 128"),
        ({"quant_n_samples": 0}, "--quant-n-samples must be a positive number"),
    ],
)
def test_bad_options_are_refused_before_anything_loads(options, message):
    with pytest.raises(ConfigError, match=message):
        AwqOptions(**options)


def test_other_widths_are_refused(martlet_manager, martlet_cli, tmp_path):
    with pytest.raises(ConfigError, match="awq cannot quantize to 8 bits"):
        check_bits(8)
    martlet_manager("export", "hf", "awq")
    result = martlet_cli(
        "export", "--model", "m", "--quant-method", "awq", "--quant-bits", "3",
        "--output-dir", str(tmp_path / "o"),
    )  # fmt: skip
    assert result.exit_code != 0 and "awq cannot quantize to 3 bits" in result.stderr


def test_a_group_size_that_does_not_divide_a_layer_is_refused(tmp_path):
    tokenizer = tiny_tokenizer()
    model = tiny_model(
        tokenizer=tokenizer, hidden_size=96, intermediate_size=192, num_attention_heads=4
    )
    with pytest.raises(ConfigError, match="--group-size 128 does not divide") as e:
        AwqQuantizer().export(
            model, tokenizer, str(tmp_path / "o"), 4, calibration=_calibration(tokenizer),
            group_size=128,
        )  # fmt: skip
    assert "pass --group-size 32" in str(e.value)


def test_without_calibration_data_it_says_what_to_pass(source, tmp_path):
    _, model, tokenizer, _, _ = source
    with pytest.raises(ConfigError, match="awq needs calibration data"):
        AwqQuantizer().export(model, tokenizer, str(tmp_path), 4)


def test_an_awq_config_without_awq_layers_is_refused(source):
    _, model, _, _, _ = source
    with pytest.raises(MartletError, match="loaded without quantized layers"):
        AwqQuantizer().prepare_prequantized(model)
