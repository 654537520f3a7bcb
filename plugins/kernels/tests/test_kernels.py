"""The kernels as records: each passes the SDK's kernel contract (the same loss and gradients,
the model's own layers back afterwards); `--kernels` chooses them by device and dtype, `none`
trains exactly as the model's own layers do, and Liger is refused off CUDA with the reason."""

from __future__ import annotations

import json

import pytest
from martlet.errors import ConfigError, UnknownNameError
from martlet_sdk.contracts import KernelContract


class TestRmsNorm(KernelContract):
    @pytest.fixture
    def plugin(self):
        return "kernels"

    @pytest.fixture
    def record_name(self):
        return "rms-norm"


class TestSwigluMlp(TestRmsNorm):
    @pytest.fixture
    def record_name(self):
        return "swiglu-mlp"


class TestLinearCrossEntropy(TestRmsNorm):
    @pytest.fixture
    def record_name(self):
        return "linear-cross-entropy"


class TestPackedAttention(TestRmsNorm):
    @pytest.fixture
    def record_name(self):
        return "packed-attention"


class TestLoraDropout(TestRmsNorm):
    @pytest.fixture
    def record_name(self):
        return "lora-dropout"


class TestFusedLora(TestRmsNorm):
    @pytest.fixture
    def record_name(self):
        return "fused-lora"


class TestPackedLinear(TestRmsNorm):
    @pytest.fixture
    def record_name(self):
        return "packed-linear"


class TestLiger(TestRmsNorm):
    @pytest.fixture
    def record_name(self):
        return "liger"


def test_auto_none_and_names_choose_by_device_and_dtype(martlet_manager):
    from martlet.kernels import chosen

    martlet_manager("kernels")
    names = [r.name for r in chosen("auto", device="cpu", dtype="float32")]
    every = [
        "fused-lora",
        "linear-cross-entropy",
        "lora-dropout",
        "packed-attention",
        "rms-norm",
        "swiglu-mlp",
    ]
    assert names == every  # not liger: CUDA only; not packed-linear: for inference
    serving = [r.name for r in chosen("auto", device="cpu", dtype="bfloat16", use="infer")]
    assert serving == ["packed-linear"]
    on_cuda = [r.name for r in chosen("auto", device="cuda", dtype="bfloat16")]
    assert "lora-dropout" not in on_cuda  # the CPU's masks (liger: not installed here)
    left_out = chosen("auto,-fused-lora, -linear-ce", device="cpu", dtype="float32")
    assert [r.name for r in left_out] == [
        "lora-dropout",
        "packed-attention",
        "rms-norm",
        "swiglu-mlp",
    ]  # an alias (linear-ce) leaves its kernel out too
    with pytest.raises(ConfigError, match="leaves kernels out of something other than auto"):
        chosen("rms-norm,-fused-lora", device="cpu", dtype="float32")
    with pytest.raises(UnknownNameError, match="fused-lroa"):
        chosen("auto,-fused-lroa", device="cpu", dtype="float32")
    assert chosen(["none"], device="cpu", dtype="bfloat16") == []
    assert [r.name for r in chosen("swiglu-mlp", device="cpu", dtype="bfloat16")] == ["swiglu-mlp"]
    with pytest.raises(ConfigError, match="kernel 'liger' does not apply to this run") as off:
        chosen("liger", device="cpu", dtype="bfloat16")
    assert "it is for training on cuda" in str(off.value) and "bfloat16 on cpu" in str(off.value)
    with pytest.raises(UnknownNameError, match="rms-nrom"):
        chosen("rms-nrom", device="cpu", dtype="float32")
    with pytest.raises(ConfigError, match="mixes auto or none with names"):
        chosen("auto,rms-norm", device="cpu", dtype="float32")


def test_the_liger_kernel_refuses_a_cpu_run_with_the_reason():
    from martlet_kernels.liger import LigerKernel

    with pytest.raises(ConfigError, match="the liger kernel runs on CUDA, not on cpu"):
        with LigerKernel().applied(object(), device="cpu", dtype="bfloat16"):
            pass


def _sft(martlet_cli, model_dir, out, *extra):
    return martlet_cli(
        "sft", "--model", str(model_dir), "--dataset", "sample-sft#8", "--max-steps", "3",
        "--max-length", "64", "--logging-steps", "1", "--output-dir", str(out),
        "--disable-progress-bar", "--seed", "3", *extra,
    )  # fmt: skip


def _losses(out):
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [m["loss"] for m in map(json.loads, lines) if "loss" in m]


def test_kernels_none_trains_as_the_models_own_layers(martlet_manager, martlet_cli, tmp_path):
    """The same run with `--kernels auto` (the default) and `--kernels none`: the same losses
    step by step (float32: the kernels compute the same operations; no LoRA dropout, whose
    masks lora-dropout draws from another generator than torch's)."""
    pytest.importorskip("martlet_train", reason="martlet-train runs the training")
    from martlet_sdk.tiny import tiny_model_dir

    martlet_manager("train", "hf", "data", "peft", "accel", "kernels")
    model = tiny_model_dir(tmp_path / "model")
    auto = _sft(martlet_cli, model, tmp_path / "auto", "--lora-dropout", "0")
    assert auto.exit_code == 0, auto.stderr
    assert (
        "kernels: fused-lora (14 layers), linear-cross-entropy (1 layer), rms-norm (5 layers), "
        "swiglu-mlp (2 layers)" in auto.stdout
    )
    none = _sft(martlet_cli, model, tmp_path / "none", "--kernels", "none", "--lora-dropout", "0")
    assert none.exit_code == 0, none.stderr
    assert "kernels:" not in none.stdout
    assert _losses(tmp_path / "auto") == pytest.approx(_losses(tmp_path / "none"), rel=1e-5)
    refused = _sft(martlet_cli, model, tmp_path / "liger", "--kernels", "liger")
    assert refused.exit_code != 0 and "kernel 'liger' does not apply" in refused.stderr


def test_liger_on_cuda_gives_the_models_loss(martlet_manager):
    """On a CUDA machine with liger-kernel (tests/gpu/kernels.sh): a bfloat16 tiny Llama's
    loss and gradients with Liger's kernels match its own layers'."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no cuda device")
    pytest.importorskip("liger_kernel", reason="pip install liger-kernel")
    from martlet_kernels.liger import LigerKernel
    from martlet_sdk.tiny import tiny_model

    torch.manual_seed(0)
    model = tiny_model().to("cuda", torch.bfloat16)
    ids = torch.randint(3, 200, (2, 16), device="cuda")
    plain = model(input_ids=ids, labels=ids).loss.float().item()
    with LigerKernel().applied(model, device="cuda", dtype="bfloat16") as switched:
        assert switched > 0
        fast = model(input_ids=ids, labels=ids).loss.float().item()
    assert fast == pytest.approx(plain, rel=2e-2)
