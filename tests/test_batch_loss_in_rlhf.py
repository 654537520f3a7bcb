"""`martlet rlhf --method` with a loss called on a batch (as sft and pt losses are) names a
command that exists, and a plugin's batch loss is selected there with --loss."""

from __future__ import annotations

import re

import pytest

BATCH_LOSSES = """
from martlet import hookimpl
from martlet.records import LossRecord


@hookimpl
def martlet_losses():
    common = dict(impl=f"{__name__}:focal", inputs="batch", summary="Focal loss.")
    yield LossRecord(name="focal", data="messages", **common)
    yield LossRecord(name="text-focal", data="text", **common)


def focal(model, batch):
    raise AssertionError("rlhf refuses a batch loss before calling it")
"""


@pytest.mark.parametrize(
    ("method", "command", "plugin_loss"),
    [
        ("focal", "sft", True),
        ("text-focal", "pt", True),
        ("sft", "sft", False),
        ("pretrain", "pt", False),  # the alias of the pt loss
    ],
)
def test_a_batch_loss_in_rlhf_names_a_command_that_exists(
    martlet, tmp_path, method, command, plugin_loss
):
    plugin = tmp_path / "acme_focal.py"
    plugin.write_text(BATCH_LOSSES, encoding="utf-8")
    result = martlet(
        "--plugin", str(plugin), "rlhf", "--method", method, "--model", "x",
        "--dataset", "sample-sft#8", "--output-dir", str(tmp_path / "out"),
    )  # fmt: skip
    assert result.rc == 2, result
    assert "supervised objective" in result.err, result
    assert f"run `martlet {command}" in result.err, result
    named = set(re.findall(r"`martlet ([\w-]+)", result.err))
    assert named, result
    for name in named - {"rlhf"}:
        assert martlet("--plugin", str(plugin), name, "--help").rc == 0, f"`martlet {name}`"
    # a plugin's batch loss is selected with --loss, which that command takes
    assert (f"`martlet {command} --loss {method}`" in result.err) is plugin_loss, result
    assert not (tmp_path / "out").exists()
    if plugin_loss:
        printed = martlet(
            "--plugin", str(plugin), command, "--loss", method, "--model", "x",
            "--dataset", "sample-sft#8", "--output-dir", str(tmp_path / "out"), "--print-config",
        )  # fmt: skip
        assert printed.rc == 0, printed
        assert f"loss: {method}" in printed.out
