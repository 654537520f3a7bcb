"""`martlet doctor`'s line for each of martlet-accel's accelerators: devices, dtypes, preferred
dtype, memory and process-group backend where torch finds the device, "no" where it does not."""

from __future__ import annotations

import json

import pytest

BACKENDS = {"cpu": "gloo", "cuda": "nccl", "mps": "gloo", "xpu": "xccl"}


def _torch_has(name: str) -> bool:
    import torch

    if name == "cpu":
        return True
    if name == "mps":
        return torch.backends.mps.is_available()
    module = getattr(torch, name, None)
    return bool(module is not None and module.is_available())


@pytest.fixture
def doctor(martlet_manager, martlet_cli):
    martlet_manager("accel")

    def run(*args):
        result = martlet_cli("doctor", *args)
        assert result.exit_code == 0, result.stderr
        return result.stdout

    return run


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_doctor_line(doctor, name):
    lines = [line.split() for line in doctor().splitlines() if line.startswith("  ")]
    words = next(words for words in lines if words[0] == name)
    if not _torch_has(name):
        assert words == [name, "no"]
        return
    assert words[1] == "yes" and words[-1] == f"backend={BACKENDS[name]}"
    fields = dict(w.split("=", 1) for w in words[2:] if "=" in w)
    assert int(fields["devices"]) >= 1 and "float32" in fields["dtypes"].split(",")
    assert fields["preferred"] in fields["dtypes"].split(",")
    assert fields["memory"] != "?"


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_doctor_json(doctor, name):
    entry = next(a for a in json.loads(doctor("--json"))["accelerators"] if a["name"] == name)
    assert entry["plugin"] == "martlet-accel"
    assert entry["available"] is _torch_has(name)
    if entry["available"]:
        assert entry["distributed_backend"] == BACKENDS[name]
        assert entry["preferred_dtype"] in entry["dtypes"]
        assert entry["memory"]["total"] >= entry["memory"]["free"] > 0
    else:
        assert set(entry) == {"name", "plugin", "available"}
