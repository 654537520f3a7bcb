"""`--mixed-precision auto` / `--torch-dtype auto` follow the accelerator records: bf16 where
the CPU multiplies it natively, float32 where it does not (both paths forced with
``MARTLET_CPU_BF16``), and the real detection reads the CPU's flags."""

from __future__ import annotations

from pathlib import Path

import pytest
from martlet.precision import emulation_warning, resolve


@pytest.fixture(autouse=True)
def _accel(martlet_manager):
    martlet_manager("accel")


@pytest.fixture
def bf16_cpu(monkeypatch):
    monkeypatch.setenv("MARTLET_CPU_BF16", "1")


@pytest.fixture
def avx2_cpu(monkeypatch):
    monkeypatch.setenv("MARTLET_CPU_BF16", "0")


def test_a_bf16_cpu_trains_adapters_on_bf16_weights_and_full_runs_on_float32(bf16_cpu):
    adapter = resolve(device="cpu")
    assert (adapter.mixed_precision, adapter.torch_dtype) == ("bf16", "bfloat16")
    full = resolve(device="cpu", trains_weights=True)
    assert (full.mixed_precision, full.torch_dtype) == ("bf16", "float32")
    served = resolve(device="cpu", inference=True)
    assert (served.mixed_precision, served.torch_dtype) == ("no", "bfloat16")
    assert "bfloat16 compute" in adapter.describe() and "(auto)" in adapter.describe()
    assert emulation_warning(adapter) is None


def test_a_cpu_without_native_bf16_computes_in_float32(avx2_cpu):
    for precision in (
        resolve(device="cpu"),
        resolve(device="cpu", trains_weights=True),
        resolve(device="cpu", inference=True),
    ):
        assert (precision.mixed_precision, precision.torch_dtype) == ("no", "float32")
        assert emulation_warning(precision) is None


def test_explicit_choices_are_kept(bf16_cpu):
    precision = resolve(device="cpu", mixed_precision="no", torch_dtype="auto")
    assert (precision.mixed_precision, precision.torch_dtype) == ("no", "float32")
    precision = resolve(device="cpu", mixed_precision="auto", torch_dtype="float32")
    assert (precision.mixed_precision, precision.torch_dtype) == ("bf16", "float32")
    assert precision.chosen == ("mixed_precision",)


def test_explicit_bf16_without_native_support_warns_with_the_measured_slowdown(avx2_cpu):
    precision = resolve(device="cpu", mixed_precision="bf16")
    assert (precision.mixed_precision, precision.torch_dtype) == ("bf16", "float32")
    warning = emulation_warning(precision)
    assert warning is not None and "bfloat16" in warning and "not native" in warning
    assert "slower than float32 here" in warning or "emulated here" in warning
    assert "--mixed-precision auto" in warning
    weights = resolve(device="cpu", mixed_precision="no", torch_dtype="bfloat16")
    assert "bfloat16" in (emulation_warning(weights) or "")


def test_no_device_named_means_the_best_available(avx2_cpu):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is the best device here")
    assert resolve().device == "cpu"


def test_the_real_detection_reads_the_cpu_flags(monkeypatch):
    from martlet_accel.devices import NATIVE_BF16_FLAGS, CpuAccelerator

    monkeypatch.delenv("MARTLET_CPU_BF16", raising=False)
    flags: set[str] = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    native = bool(flags & NATIVE_BF16_FLAGS)
    assert CpuAccelerator().fast_bf16() is native
    expected = ("bf16", "bfloat16") if native else ("no", "float32")
    precision = resolve(device="cpu")
    assert (precision.mixed_precision, precision.torch_dtype) == expected
    print(f"this CPU: native bf16 = {native}; auto = {expected}")
