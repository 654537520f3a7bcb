"""The command and the app as built: `martlet web-ui` is a command like any other, it listens
on this machine only and opens no share link, and the app draws a plugin's tuner and loss with
their own fields though nothing in the UI names them."""

from __future__ import annotations

import pytest
from martlet_sdk.contracts import CommandContract


class TestWebUiCommand(CommandContract):
    @pytest.fixture
    def plugin(self):
        return "webui"

    @pytest.fixture
    def record_name(self):
        return "web-ui"


def test_it_listens_on_this_machine_and_has_no_share_link(martlet_manager, martlet_cli):
    martlet_manager("webui")
    shown = martlet_cli("web-ui", "--print-config")
    assert shown.exit_code == 0, shown.stderr
    assert "host: 127.0.0.1" in shown.stdout
    refused = martlet_cli("web-ui", "--share")
    assert refused.exit_code != 0
    assert "unknown flag --share" in refused.stderr
    bad = martlet_cli("web-ui", "--port", "70000")
    assert bad.exit_code != 0 and "--port must be between 0 and 65535" in bad.stderr


def _labelled(demo, label):
    return [b for b in demo.blocks.values() if getattr(b, "label", None) == label]


def test_a_plugins_tuner_and_loss_appear_with_their_fields(
    martlet_manager, acme, tmp_path, monkeypatch
):
    """Built from the registry: the plugin's tuner is a choice, its options are fields
    (float -> number, Literal -> dropdown, bool -> checkbox, list -> text) with their help
    and defaults, shown while it is chosen; its loss is a choice of the sft objective."""
    for name in ("GRADIO_ANALYTICS_ENABLED", "HF_HUB_OFFLINE"):
        monkeypatch.setenv(name, "")  # restored after the test; the app sets them
    martlet_manager("train", "peft", acme)
    from martlet_webui.app import WebUI

    demo = WebUI(tmp_path, env={}).build()
    import gradio as gr

    (tuner,) = _labelled(demo, "--tuner")
    assert ("acme-norm", "acme-norm") in tuner.choices
    (scale,) = _labelled(demo, "--acme-scale")
    assert isinstance(scale, gr.Number) and scale.value == 1.0
    assert scale.info == "Multiply the norm's weight by this first."
    (mode,) = _labelled(demo, "--acme-mode")
    assert isinstance(mode, gr.Dropdown) and [v for _, v in mode.choices] == ["fast", "exact"]
    (bias,) = _labelled(demo, "--acme-bias")
    assert isinstance(bias, gr.Checkbox) and bias.value is False
    (layers,) = _labelled(demo, "--acme-layers")
    assert isinstance(layers, gr.Textbox)
    (weight,) = _labelled(demo, "--acme-weight")
    assert isinstance(weight, gr.Number)
    (objective,) = [
        b for b in demo.blocks.values() if getattr(b, "elem_id", "") == "train-objective"
    ]
    assert ("acme-weighted", "acme-weighted") in objective.choices
    # lora is the default tuner: its group shows, acme-norm's waits until it is chosen
    groups = {b.elem_id: b for b in demo.blocks.values() if isinstance(b, gr.Group) and b.elem_id}
    assert groups["train-options-tuners-lora"].visible is True
    assert groups["train-options-tuners-acme-norm"].visible is False
    import os

    assert os.environ["GRADIO_ANALYTICS_ENABLED"] == "False" and os.environ["HF_HUB_OFFLINE"] == "1"
