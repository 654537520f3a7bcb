"""The bnb quantizer on the tiny model: 4-bit (nf4, fp4) and 8-bit keep the outputs, the
compute dtype is honoured and exact, any width works, a save and reload changes nothing, QLoRA
gets its gradients after an evaluation, and nothing is fetched from the hub."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import martlet
import pytest
import torch
import yaml
from martlet.errors import ConfigError
from martlet.quantize import chosen, prequantized, weight_bytes
from martlet_bnb.quantizer import BnbQuantizer, compute_dtype, fused_cpu_kernel
from martlet_sdk.contracts import QuantizerContract

#: the largest relative error of the logits at each width (measured: nf4 0.16, fp4 0.21,
#: 8-bit 0.02 on the wide tiny model), and at most this share of a stranger's error
BOUNDS = {"nf4": 0.25, "fp4": 0.3, "int8": 0.04}
STRANGER_SHARE = 0.25
#: the wide tiny model's shape (as conftest.py's wide_model_dir)
WIDE = {"hidden_size": 128, "intermediate_size": 256, "num_attention_heads": 4}


def logits(model, ids):
    model.eval()
    with torch.no_grad():
        return model(input_ids=ids).logits.float()


def relative(a, b) -> float:
    return float((a - b).norm() / b.norm())


def load(folder, bits=4, **options):
    model, _ = martlet.load_model(
        str(folder),
        torch_dtype="float32",
        quant_method="bnb",
        quant_bits=bits,
        quant_options=options,
    )
    return model


def linear4bit_layers(model):
    import bitsandbytes as bnb

    return [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]


def dequantized_copy(quantized, folder):
    """The unquantized model with each 4-bit layer's weight replaced by what its 4 bits hold
    (dequantized in float32): what exact float32 compute on the 4-bit model gives."""
    import bitsandbytes.functional as F

    plain, _ = martlet.load_model(str(folder), torch_dtype="float32")
    layers = dict(quantized.named_modules())
    for name, module in plain.named_modules():
        layer = layers.get(name)
        if isinstance(module, torch.nn.Linear) and layer in linear4bit_layers(quantized):
            weight = layer.weight
            module.weight.data = F.dequantize_4bit(weight.data, weight.quant_state).float()
    return plain


class TestBnbContract(QuantizerContract):
    @pytest.fixture
    def plugin(self):
        return "bnb"

    @pytest.fixture
    def record_name(self):
        return "bnb"


def test_the_record_says_what_it_does():
    record = martlet.registry.get("quantizers", "bitsandbytes")
    assert record.name == "bnb" and record.bits == (4, 8)
    assert set(record.stages) == {"load", "prequantized"} and not record.needs_cuda
    assert record.requires == ("bitsandbytes>=0.45",) and not record.missing_requirements()
    # a checkpoint transformers saved with a bitsandbytes quantization_config comes here
    assert prequantized({"quant_method": "bitsandbytes"}) == record


@pytest.mark.parametrize(
    ("bits", "options", "kind"),
    [
        (4, {}, "nf4"),
        (4, {"bnb_4bit_quant_type": "fp4", "bnb_4bit_use_double_quant": False}, "fp4"),
        (8, {}, "int8"),
    ],
)
def test_each_width_keeps_the_outputs(wide_model_dir, ids, bits, options, kind):
    from martlet_sdk.tiny import tiny_model

    plain, _ = martlet.load_model(str(wide_model_dir), torch_dtype="float32")
    reference = logits(plain, ids)
    quantized = load(wide_model_dir, bits, **options)
    error = relative(logits(quantized, ids), reference)
    stranger = relative(logits(tiny_model(seed=7, **WIDE), ids), reference)
    assert error <= BOUNDS[kind], f"{kind}: logits {error:.3f} off"
    assert error <= STRANGER_SHARE * stranger, f"{kind}: {error:.3f} vs a stranger's {stranger:.3f}"
    if bits == 4:
        layers = linear4bit_layers(quantized)
        assert len(layers) == 14  # 7 projections in each of 2 layers; lm_head stays
        assert {layer.weight.quant_state.quant_type for layer in layers} == {kind}
        nested = {layer.weight.quant_state.nested for layer in layers}
        assert nested == {options.get("bnb_4bit_use_double_quant", True)}
    else:
        import bitsandbytes as bnb

        layers = [m for m in quantized.modules() if isinstance(m, bnb.nn.Linear8bitLt)]
        assert len(layers) == 14 and layers[0].weight.dtype == torch.int8
    assert weight_bytes(quantized) < weight_bytes(plain)


def test_widths_bnb_does_not_have_are_refused_clearly():
    with pytest.raises(ConfigError) as info:
        chosen("bnb", 3, stage="load")
    assert info.value.what == "bnb cannot quantize to 3 bits"
    assert "--quant-bits 4" in info.value.fix
    with pytest.raises(ConfigError, match="bnb cannot quantize to 3 bits"):
        BnbQuantizer().quantize_on_load(3)


def test_a_3_bit_request_on_the_command_line_fails_first(martlet_manager, martlet_cli, tmp_path):
    martlet_manager("train", "hf", "data", "peft", "accel", "bnb")
    out = tmp_path / "run"
    missing = tmp_path / "no-model"  # never reached: the width is checked first
    result = martlet_cli(
        "sft", "--model", str(missing), "--quant-method", "bnb", "--quant-bits", "3",
        "--dataset", "sample-sft#4", "--output-dir", str(out),
    )  # fmt: skip
    assert result.exit_code != 0
    assert "bnb cannot quantize to 3 bits" in result.stderr
    assert "--quant-bits 4" in result.stderr
    assert not (out / "config.yaml").exists()


def test_quantization_bit_alone_takes_bnbs_options(martlet_manager, martlet_cli, tmp_path):
    """ms-swift's `--quantization_bit 4` alone means bitsandbytes, with its options (found
    broken: bnb's options were refused as 'an option of quantizer bnb, and --quant-method
    selects no quantizer')."""
    martlet_manager("train", "hf", "data", "peft", "accel", "bnb")
    result = martlet_cli(
        "sft", "--model", str(tmp_path), "--quantization_bit", "4",
        "--bnb-4bit-quant-type", "fp4", "--dataset", "sample-sft#4", "--print-config",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    printed = yaml.safe_load(result.stdout)
    assert printed["quant_method"]["name"] == "bnb"
    assert printed["quant_method"]["bnb_4bit_quant_type"] == "fp4"
    assert printed["quant_bits"] == 4


@pytest.mark.parametrize(("native", "expected"), [("1", "bfloat16"), ("0", "float32")])
def test_auto_compute_dtype_follows_the_automatic_precision(monkeypatch, native, expected):
    monkeypatch.setenv("MARTLET_CPU_BF16", native)
    assert compute_dtype("auto") == expected
    config = BnbQuantizer().quantize_on_load(4)
    assert config.bnb_4bit_compute_dtype == getattr(torch, expected)
    explicit = BnbQuantizer().quantize_on_load(4, bnb_4bit_compute_dtype="float16")
    assert explicit.bnb_4bit_compute_dtype == torch.float16


def test_options_reach_the_config():
    config = BnbQuantizer().quantize_on_load(
        4,
        bnb_4bit_quant_type="fp4",
        bnb_4bit_use_double_quant=False,
        bnb_4bit_compute_dtype="bfloat16",
        bnb_4bit_quant_storage="bfloat16",
    )
    assert config.load_in_4bit and not config.load_in_8bit
    assert config.bnb_4bit_quant_type == "fp4" and not config.bnb_4bit_use_double_quant
    assert config.bnb_4bit_compute_dtype == torch.bfloat16
    assert config.bnb_4bit_quant_storage == torch.bfloat16
    assert BnbQuantizer().quantize_on_load(8).load_in_8bit


@pytest.mark.parametrize("folder", ["wide_model_dir", "tiny_model_dir"])
def test_float32_compute_is_float32_exact_at_any_width(request, folder, ids):
    """bitsandbytes' repacked AVX512-BF16 path would multiply in bf16 (~1e-2 off) and fails
    on the tiny model's hidden size 96 (not a multiple of 64): it is off."""
    folder = request.getfixturevalue(folder)
    quantized = load(folder, bnb_4bit_compute_dtype="float32")
    assert all(layer.compute_dtype == torch.float32 for layer in linear4bit_layers(quantized))
    out = logits(quantized, ids)
    exact = logits(dequantized_copy(quantized, folder), ids)
    torch.testing.assert_close(out, exact, rtol=1e-5, atol=1e-5)
    # bf16 compute is honoured too: close, but not float32-exact
    half = logits(load(folder, bnb_4bit_compute_dtype="bfloat16"), ids)
    assert 1e-4 < (half - exact).abs().max() and relative(half, exact) < 0.05


def test_a_width_not_a_multiple_of_64_generates(tiny_model_dir, ids):
    quantized = load(tiny_model_dir)
    assert quantized.config.hidden_size % 64 != 0
    with torch.no_grad():
        out = quantized.generate(ids[:1, :8], max_new_tokens=4, do_sample=False)
    assert out.shape == (1, 12)


@pytest.mark.parametrize(
    ("bits", "options"),
    [
        (4, {"bnb_4bit_compute_dtype": "float32"}),
        (4, {"bnb_4bit_compute_dtype": "bfloat16"}),
        (4, {"bnb_4bit_quant_type": "fp4", "bnb_4bit_compute_dtype": "bfloat16"}),
        (8, {}),
    ],
)
def test_save_and_reload_gives_identical_outputs(wide_model_dir, ids, tmp_path, bits, options):
    """A save after inference writes what was loaded (bitsandbytes' in-place repacking would
    have rounded the scales to bf16 by then), and the reload — through the ``prequantized``
    stage — gives identical logits."""
    first, tokenizer = martlet.load_model(
        str(wide_model_dir),
        torch_dtype="float32",
        quant_method="bnb",
        quant_bits=bits,
        quant_options=options,
    )
    loaded = {k: v.detach().clone() for k, v in first.state_dict().items()}
    before = logits(first, ids)  # inference first: what `martlet infer` runs before a save
    first.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())["quantization_config"]
    assert saved["quant_method"] == "bitsandbytes"
    assert saved["load_in_4bit" if bits == 4 else "load_in_8bit"] is True

    again, _ = martlet.load_model(str(tmp_path), torch_dtype="float32")
    state = again.state_dict()
    assert set(state) == set(loaded)
    changed = [k for k, v in loaded.items() if not torch.equal(state[k].cpu(), v)]
    assert not changed, f"changed by the save and reload: {changed[:5]}"
    assert torch.equal(logits(again, ids), before)
    assert all(not layer.support_avx512bf16_for_cpu for layer in linear4bit_layers(again))


@pytest.mark.skipif(not fused_cpu_kernel(), reason="no AVX512-BF16: bitsandbytes' fused kernel")
@pytest.mark.parametrize("folder", ["wide_model_dir", "tiny_model_dir"])
def test_bf16_inference_runs_the_fused_kernel_on_a_copy(request, folder, ids):
    """On an AVX512-BF16 CPU, bf16 inference on layers the fused kernel fits runs it — on a
    repacked copy: the weights and scales the layer holds stay as loaded, and the outputs are
    as close to exact as the exact bf16 path's."""
    from martlet_bnb.fused import FusedCpuLinear4bit

    folder = request.getfixturevalue(folder)
    model = load(folder, bnb_4bit_compute_dtype="bfloat16")
    fused = [m for m in linear4bit_layers(model) if isinstance(m, FusedCpuLinear4bit)]
    fits = [
        m for m in linear4bit_layers(model) if m.out_features % 32 == 0 and m.in_features % 64 == 0
    ]
    assert fused == fits and fused  # (hidden 96: only down_proj, 256 -> 96, fits)
    loaded = {k: v.detach().clone() for k, v in model.state_dict().items()}
    out = logits(model, ids)
    assert all(m.packed_bytes() > 0 for m in fused)
    assert all(torch.equal(v, loaded[k]) for k, v in model.state_dict().items())
    exact = logits(dequantized_copy(model, folder), ids)
    model.train()  # in training mode every layer takes bitsandbytes' exact path
    with torch.no_grad():
        exact_bf16 = model(input_ids=ids).logits.float()
    assert relative(out, exact) < 0.02
    assert relative(out, exact) < 2 * relative(exact_bf16, exact)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_qlora_keeps_its_gradients_after_an_evaluation(wide_model_dir, ids, dtype):
    """An evaluation (eval mode, no gradients) between training steps must not switch the
    4-bit layers to a kernel without a backward (bitsandbytes' in-place repacking): every
    adapter, the first layer's included, still gets a gradient."""
    from peft import LoraConfig, get_peft_model

    base = load(wide_model_dir, bnb_4bit_compute_dtype=dtype)
    model = get_peft_model(base, LoraConfig(r=4, target_modules="all-linear"))
    logits(model, ids)  # the evaluation
    model.train()
    model(input_ids=ids, labels=ids).loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if "lora_B" in n}
    assert len(grads) == 14
    silent = [n for n, g in grads.items() if g is None or not g.abs().sum() > 0]
    assert not silent, f"no gradient reached {silent}"


def test_8bit_layers_do_not_log_on_every_call(wide_model_dir, ids, caplog):
    quantized = load(wide_model_dir, 8)
    with caplog.at_level("WARNING"):
        logits(quantized, ids)
    assert "inputs will be cast" not in caplog.text


def test_nothing_is_fetched_from_the_hub(wide_model_dir):
    """Importing bitsandbytes on an AVX512-BF16 CPU asks the hub for an optional kernel; the
    quantizer imports it without: a process where every connection fails loads 4-bit
    without trying one, and without the warning."""
    code = textwrap.dedent(
        f"""
        import socket
        tried = []
        def refuse(*args, **kwargs):
            tried.append(args)
            raise OSError("no network in this test")
        socket.socket.connect = refuse
        socket.create_connection = refuse
        socket.getaddrinfo = refuse
        from martlet.manager import set_manager
        from martlet_sdk.isolation import isolated_manager
        set_manager(isolated_manager("bnb", "hf", "accel"))
        import martlet, peft  # peft imports bitsandbytes too
        model, _ = martlet.load_model({str(wide_model_dir)!r}, quant_method="bnb", quant_bits=4)
        print("tried", len(tried))
        """
    )
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "MARTLET_DEBUG")}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert "tried 0" in proc.stdout
    assert "kernels-community" not in proc.stderr and "gemm_4bit" not in proc.stderr
