"""martlet-accel against the SDK's accelerator contract, on whatever devices this machine has."""

import pytest
from martlet_sdk.contracts import AcceleratorContract


class TestAccelerators(AcceleratorContract):
    @pytest.fixture
    def plugin(self):
        return "accel"

    @pytest.fixture(params=["cpu", "cuda", "mps", "xpu"])
    def record_name(self, request):
        return request.param


def test_cpu_prefers_bf16_only_with_native_support():
    from martlet_accel.devices import CpuAccelerator

    cpu = CpuAccelerator()
    assert cpu.preferred_dtype() == ("bfloat16" if cpu.fast_bf16() else "float32")


def test_doctor_lists_the_accelerators(martlet_manager, martlet_cli):
    martlet_manager("accel")
    result = martlet_cli("doctor", "--json")
    assert result.exit_code == 0, result.stderr
    import json

    report = json.loads(result.stdout)
    by_name = {a["name"]: a for a in report["accelerators"]}
    assert set(by_name) == {"cpu", "cuda", "mps", "xpu"}
    assert by_name["cpu"]["available"] is True
    assert by_name["cpu"]["memory"]["total"] > 0
