"""A fake torch_npu for machines without Ascend NPUs.

``fake_npu_site`` is a folder holding a ``torch-npu`` distribution (its ``*.dist-info``, so the
record's ``requires`` is met) whose ``torch_npu`` module does what the real one does on import —
renames torch's PrivateUse1 device type to ``npu`` and adds ``torch.npu`` — with a ``torch.npu``
that reports ``FAKE_NPU_COUNT`` devices (2 by default), 64 GiB each (24 GiB free), bfloat16
unless ``FAKE_NPU_BF16=0``, and writes what it is asked to ``FAKE_NPU_LOG`` (JSON lines). It has
no kernels: tensors cannot live on its devices, so the contract's tensor checks cannot run on it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from martlet_sdk.testing import FakeSite

FAKE_TORCH_NPU = '''
"""A fake torch_npu (martlet-npu's tests): torch.npu without devices behind it."""

import json
import os
import types

import torch

GIB = 1 << 30


def _note(*call):
    path = os.environ.get("FAKE_NPU_LOG")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(call) + "\\n")


def _count():
    return int(os.environ.get("FAKE_NPU_COUNT", "2"))


npu = types.ModuleType("torch_npu.npu")
npu.is_available = lambda: _count() > 0
npu.device_count = _count
npu.is_bf16_supported = lambda: os.environ.get("FAKE_NPU_BF16", "1") == "1"
npu.mem_get_info = lambda device=None: (24 * GIB, 64 * GIB)
npu.memory_allocated = lambda device=None: GIB
npu.manual_seed_all = lambda seed: _note("manual_seed_all", seed)
npu._is_in_bad_fork = lambda: False  # what torch.manual_seed asks before seeding npu too
npu.synchronize = lambda device=None: _note("synchronize")
npu.set_device = lambda index: _note("set_device", index)

# what makes torch.device("npu") valid; once per process and for good, so the tests that
# import this module into pytest's own process (the fake_npu fixture) leave it out
if os.environ.get("FAKE_NPU_RENAME", "1") == "1":
    torch.utils.rename_privateuse1_backend("npu")
torch.npu = npu
_note("import")
'''


@pytest.fixture(scope="session")
def fake_npu_site(tmp_path_factory) -> Path:
    """A folder to put first on ``sys.path``/``PYTHONPATH``: the fake ``torch-npu`` 2.5.1."""
    site = FakeSite(tmp_path_factory.mktemp("fake-torch-npu"))
    site.dist("torch-npu", "2.5.1", entry_points={}, modules={"torch_npu": FAKE_TORCH_NPU})
    return site.root


@pytest.fixture
def fake_npu(monkeypatch, fake_npu_site):
    """The fake torch_npu importable in this process for the test (``torch.npu`` and
    torch_npu forgotten afterwards); yields its ``torch.npu``."""
    import torch

    monkeypatch.syspath_prepend(str(fake_npu_site))
    monkeypatch.delitem(sys.modules, "torch_npu", raising=False)
    # renaming torch's PrivateUse1 device type cannot be undone, and torch.accelerator would
    # report it to every later test in this process
    monkeypatch.setenv("FAKE_NPU_RENAME", "0")
    missing = object()
    before = getattr(torch, "npu", missing)
    try:
        import torch_npu

        yield torch_npu.npu
    finally:
        sys.modules.pop("torch_npu", None)
        if before is missing:
            if hasattr(torch, "npu"):
                delattr(torch, "npu")
        else:
            torch.npu = before
