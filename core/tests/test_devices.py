"""`martlet.devices.place` for a vendor's device kind: a launched process (``LOCAL_RANK``)
computes on the device of its local rank, and a device whose package is missing is an error
that says what to install (or, with ``fallback_on_cpu``, the CPU)."""

from __future__ import annotations

import pytest
from martlet.devices import place
from martlet.errors import ConfigError

IMPL = """
import os


class Acme:
    device_type = "acme"

    def is_available(self):
        return self.device_count() > 0

    def device_count(self):
        return int(os.environ.get("ACME_COUNT", "4"))


class Host:
    device_type = "cpu"

    def is_available(self):
        return True

    def device_count(self):
        return 1
"""

PLUGIN = """
from martlet import hookimpl
from martlet.records import AcceleratorRecord

MARTLET_API = 1


@hookimpl
def martlet_accelerators():
    yield AcceleratorRecord(name="cpu", impl="acme_devices:Host")
    yield AcceleratorRecord(name="acme", impl="acme_devices:Acme")
    yield AcceleratorRecord(
        name="acme-next", device_type="acme", impl="acme_devices:Acme",
        requires=("acme-runtime-not-installed>=1",),
    )
"""


@pytest.fixture(autouse=True)
def _acme(site, make_module, martlet_manager, monkeypatch):
    site.module("acme_devices", IMPL)
    martlet_manager(make_module("acme_devices_plugin", PLUGIN))
    monkeypatch.delenv("LOCAL_RANK", raising=False)


def test_one_process_uses_the_default_device_or_the_index_given():
    assert place("acme").torch_device == "acme"
    assert place("acme:2").torch_device == "acme:2"
    assert place(None).name == "acme"


def test_a_launched_process_computes_on_the_device_of_its_local_rank(monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "3")
    placement = place("acme")
    assert placement.torch_device == "acme:3"
    assert placement.spec == "acme"  # what a run records stays the same on every rank
    assert place(None).torch_device == "acme:3"
    assert place("acme:0").torch_device == "acme:0"  # an index the user gave is kept
    assert place("cpu").torch_device == "cpu"


def test_ranks_share_a_single_device(monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("ACME_COUNT", "1")
    assert place("acme").torch_device == "acme"


def test_more_ranks_on_a_node_than_devices_is_an_error(monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "4")
    with pytest.raises(ConfigError, match="local rank 4 has no acme device of its own") as raised:
        place("acme")
    assert "--nproc-per-node 4" in raised.value.fix


def test_a_device_whose_package_is_missing_says_what_to_install(capsys):
    with pytest.raises(ConfigError, match="--device acme-next cannot be used") as raised:
        place("acme-next")
    assert "needs acme-runtime-not-installed>=1, which is not installed" in raised.value.why
    assert "pip install 'acme-runtime-not-installed>=1'" in raised.value.fix
    assert place("acme-next", fallback_on_cpu=True).name == "cpu"
    assert "running on the CPU (--fallback-on-cpu)" in capsys.readouterr().out
