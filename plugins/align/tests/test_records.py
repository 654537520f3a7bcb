"""The seven loss records: fields, the SDK's loss contract, and no torch at registration."""

from __future__ import annotations

import subprocess
import sys

import pytest
from martlet_sdk.contracts import LossContract

EXPECTED = {
    # name: (impl, data, reference, inputs, aliases)
    "dpo": ("martlet_align.preference:dpo", "preference", True, "logps", ()),
    "simpo": ("martlet_align.preference:simpo", "preference", False, "logps", ()),
    "cpo": ("martlet_align.preference:cpo", "preference", False, "logps", ()),
    "orpo": ("martlet_align.preference:orpo", "preference", False, "logps", ()),
    "kto": ("martlet_align.kto:kto", "kto", True, "logps", ()),
    "rm": ("martlet_align.reward:bradley_terry", "preference", False, "rewards",
           ("reward-model", "reward")),
    "gkd": ("martlet_align.distill:gkd", "messages", False, "logits", ()),
}  # fmt: skip


class TestAlignLosses(LossContract):
    @pytest.fixture
    def plugin(self):
        return "align"

    @pytest.fixture(params=sorted(EXPECTED))
    def record_name(self, request):
        return request.param


def test_records_say_how_their_losses_are_called(martlet_manager):
    manager = martlet_manager("align")
    align = {r.name: r for r in manager.registry.records("losses")}
    assert set(align) == set(EXPECTED)
    for name, (impl, data, reference, inputs, aliases) in EXPECTED.items():
        record = align[name]
        got = (record.impl, record.data, record.reference, record.inputs, tuple(record.aliases))
        assert got == (impl, data, reference, inputs, aliases), name


def test_the_package_imports_without_torch():
    code = (
        "import sys, martlet_align, martlet_align.plugin, martlet_align.output; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
