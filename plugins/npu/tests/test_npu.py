"""martlet-npu on a machine without Ascend NPUs: listed everywhere, refused with a clear error
without torch_npu, and — on a fake torch_npu (``conftest.py``) — available, with its dtypes,
memory, seeding, ``hccl`` and one NPU per launched rank; ``martlet doctor`` reports each case."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata

import pytest
from martlet.errors import ConfigError, MartletError
from martlet_sdk.contracts import AcceleratorContract
from martlet_sdk.testing import env_with, run_cli

NO_KERNELS = "the fake torch_npu has no kernels: tensor checks run on Ascend hardware only"


def _real_torch_npu() -> bool:
    try:
        metadata.version("torch-npu")
    except metadata.PackageNotFoundError:
        return False
    return True


needs_no_torch_npu = pytest.mark.skipif(_real_torch_npu(), reason="torch_npu is installed here")


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    """No launcher environment, and prepare() runs again in each test."""
    import martlet.devices

    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.setattr(martlet.devices, "_PREPARED", set())


@pytest.fixture
def npu_log(tmp_path, monkeypatch):
    """What the fake torch_npu is asked, as a list of calls (read when called)."""
    path = tmp_path / "npu.jsonl"
    monkeypatch.setenv("FAKE_NPU_LOG", str(path))
    return lambda: (
        [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    )


class TestNpuOnAFakeTorchNpu(AcceleratorContract):
    """The whole contract with torch_npu present and two NPUs reported."""

    @pytest.fixture(autouse=True)
    def _fake(self, fake_npu):
        return fake_npu

    @pytest.fixture
    def plugin(self):
        return "npu"

    @pytest.fixture
    def record_name(self):
        return "npu"

    def test_device_holds_tensors(self, available):
        pytest.skip(NO_KERNELS)

    def test_every_supported_dtype_computes(self, available):
        assert available.preferred_dtype() in available.supported_dtypes()
        pytest.skip(NO_KERNELS)

    def test_manual_seed_makes_sampling_repeatable(self, available):
        pytest.skip(NO_KERNELS)


# --------------------------------------------------------------- without torch_npu


@needs_no_torch_npu
def test_without_torch_npu_it_is_listed_but_unavailable(martlet_manager):
    manager = martlet_manager("npu", "accel")
    record = manager.registry.get("accelerators", "npu")
    assert record.missing_requirements() == ["torch-npu"]
    assert manager.registry.get("accelerators", "ascend") == record
    from martlet.devices import best

    assert best()[0] != "npu"


@needs_no_torch_npu
def test_asking_for_it_without_torch_npu_is_a_clear_error(martlet_manager, capsys):
    martlet_manager("npu", "accel")
    from martlet.devices import place

    with pytest.raises(ConfigError) as raised:
        place("npu")
    error = raised.value
    assert "--device npu cannot be used" in str(error)
    assert "needs torch-npu, which is not installed" in error.why
    assert "pip install 'torch-npu'" in error.fix and "martlet-npu plugin's README" in error.fix
    assert "--device cpu" in error.fix
    assert place("npu:1", fallback_on_cpu=True).name == "cpu"
    assert "running on the CPU (--fallback-on-cpu)" in capsys.readouterr().out


# --------------------------------------------------------------- on the fake torch_npu


def test_the_fake_npu_is_chosen_by_name_and_by_default(martlet_manager, npu_log, fake_npu):
    martlet_manager("npu", "accel")
    from martlet.devices import place

    placement = place("npu")
    assert (placement.name, placement.device_type, placement.torch_device) == ("npu", "npu", "npu")
    assert place("ascend:1").torch_device == "npu:1"
    assert place(None).name == "npu"  # the best available device other than the CPU
    assert npu_log()[0] == ["import"]
    with pytest.raises(ConfigError, match="there are 2 npu devices"):
        place("npu:2")


def test_dtypes_follow_the_chip(martlet_manager, fake_npu, monkeypatch):
    martlet_manager("npu", "accel")
    from martlet.precision import resolve
    from martlet_npu.accelerator import NpuAccelerator

    npu = NpuAccelerator()
    assert npu.supported_dtypes() == ["float32", "bfloat16", "float16"]
    assert npu.preferred_dtype() == "bfloat16"
    adapters = resolve(device="npu")
    assert (adapters.mixed_precision, adapters.torch_dtype) == ("bf16", "bfloat16")
    assert resolve(device="npu", inference=True).torch_dtype == "bfloat16"

    monkeypatch.setenv("FAKE_NPU_BF16", "0")  # a first-generation Ascend 910: no bfloat16
    assert npu.supported_dtypes() == ["float32", "float16"]
    assert npu.preferred_dtype() == "float16"
    assert resolve(device="npu").mixed_precision == "fp16"


def test_memory_seed_and_synchronize_go_through_torch_npu(npu_log, fake_npu):
    from martlet_npu.accelerator import NpuAccelerator

    npu = NpuAccelerator()
    assert npu.memory_stats(1) == {"total": 64 << 30, "free": 24 << 30, "allocated": 1 << 30}
    npu.manual_seed(7)
    npu.synchronize()
    assert ["manual_seed_all", 7] in npu_log() and ["synchronize"] in npu_log()


def test_its_devices_are_torch_devices_of_type_npu(fake_npu_site):
    """In a fresh process: the fake renames torch's PrivateUse1 device type as torch_npu does."""
    code = "from martlet_npu.accelerator import NpuAccelerator as N; print(repr(N().device(1)))"
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env_with(fake_npu_site)
    )
    assert run.stdout.strip() == "device(type='npu', index=1)", run.stderr


def test_a_launched_rank_gets_the_npu_of_its_local_rank(
    martlet_manager, fake_npu, npu_log, monkeypatch
):
    martlet_manager("npu", "accel")
    from martlet.devices import place

    monkeypatch.setenv("LOCAL_RANK", "1")
    placement = place("npu")
    assert placement.torch_device == "npu:1"  # where infer/export/deploy put the model
    assert placement.spec == "npu"  # what a run records: the same on every rank
    assert placement.accelerator.distributed_backend() == "hccl"  # its process group's
    assert ["set_device", 1] in npu_log()  # the current device, before HCCL starts
    assert place(None).torch_device == "npu:1"
    assert place("npu:0").torch_device == "npu:0"  # an index the user gave is kept

    monkeypatch.setenv("LOCAL_RANK", "2")  # three ranks on a node with two NPUs
    with pytest.raises(ConfigError, match="local rank 2 has no npu device of its own") as raised:
        place("npu")
    assert "--nproc-per-node 2" in raised.value.fix


def test_a_broken_torch_npu_install_is_explained(martlet_manager, tmp_path, monkeypatch):
    """torch_npu installed but not importable (the CANN environment not loaded)."""
    from martlet_sdk.testing import FakeSite

    site = FakeSite(tmp_path / "broken")
    site.dist(
        "torch-npu",
        "2.5.1",
        entry_points={},
        modules={"torch_npu": "raise ImportError('libhccl.so: cannot open shared object')"},
    )
    monkeypatch.syspath_prepend(str(site.root))
    monkeypatch.delitem(sys.modules, "torch_npu", raising=False)
    martlet_manager("npu", "accel")
    from martlet.devices import best, place

    with pytest.raises(MartletError) as raised:
        place("npu")
    assert "torch_npu is installed but cannot be imported" in str(raised.value)
    assert "libhccl.so" in raised.value.why and "set_env.sh" in raised.value.fix
    assert best()[0] == "cpu"  # a broken device is passed over when none is named


# --------------------------------------------------------------- martlet doctor


def _doctor_npu_line(result) -> str:
    return next(line for line in result.stdout.splitlines() if line.strip().startswith("npu "))


@needs_no_torch_npu
def test_doctor_without_torch_npu():
    result = run_cli("doctor")
    assert result.returncode == 0, result.stderr
    assert _doctor_npu_line(result).split() == ["npu", "no", "needs", "torch-npu"]
    report = json.loads(run_cli("doctor", "--json").stdout)
    entry = next(a for a in report["accelerators"] if a["name"] == "npu")
    assert entry == {
        "name": "npu",
        "plugin": "martlet-npu",
        "available": False,
        "note": "needs torch-npu",
    }


def test_doctor_with_the_fake_torch_npu(fake_npu_site):
    env = env_with(fake_npu_site)
    result = run_cli("doctor", env=env)
    assert result.returncode == 0, result.stderr
    assert _doctor_npu_line(result).split() == [
        "npu", "yes", "devices=2", "dtypes=float32,bfloat16,float16", "preferred=bfloat16",
        "memory=64.0", "GiB", "free=24.0", "GiB", "backend=hccl",
    ]  # fmt: skip
    report = json.loads(run_cli("doctor", "--json", env={**env, "FAKE_NPU_BF16": "0"}).stdout)
    entry = next(a for a in report["accelerators"] if a["name"] == "npu")
    assert entry["available"] is True and entry["devices"] == 2
    assert entry["dtypes"] == ["float32", "float16"] and entry["preferred_dtype"] == "float16"
    assert entry["memory"] == {"total": 64 << 30, "free": 24 << 30, "allocated": 1 << 30}
    assert entry["distributed_backend"] == "hccl"
    unavailable = run_cli("doctor", env={**env, "FAKE_NPU_COUNT": "0"})
    assert _doctor_npu_line(unavailable).split() == ["npu", "no"]


def test_doctor_with_a_broken_torch_npu(tmp_path):
    from martlet_sdk.testing import FakeSite

    site = FakeSite(tmp_path / "broken")
    site.dist(
        "torch-npu",
        "2.5.1",
        entry_points={},
        modules={"torch_npu": "raise ImportError('libhccl.so: cannot open shared object')"},
    )
    result = run_cli("doctor", env=env_with(site.root))
    assert result.returncode == 0, result.stderr
    assert _doctor_npu_line(result).split()[:3] == ["npu", "no", "error:"]
    assert "torch_npu is installed but cannot be imported" in result.stdout
    assert "libhccl.so" in result.stdout and "set_env.sh" in result.stdout
