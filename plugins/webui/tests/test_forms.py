"""Form fields come from option declarations — a plugin's tuner or loss brings its own — and
form values go back as the flags the command reads, refused as the command would refuse them."""

from __future__ import annotations

import pytest
from martlet.errors import ConfigError
from martlet_webui import catalog
from martlet_webui.forms import (
    CHECKBOX,
    DROPDOWN,
    NUMBER,
    TEXTBOX,
    changed_flags,
    field_for,
    fields_of,
    value_of,
)


@pytest.fixture
def norm(acme):
    import acme_webui

    return {f.name: f for f in fields_of(acme_webui.NormOptions)}


def test_each_type_gets_its_widget_with_the_help_and_the_default(norm):
    scale, mode, layers, bias, limit = (
        norm[n] for n in ("acme_scale", "acme_mode", "acme_layers", "acme_bias", "acme_limit")
    )
    assert (scale.widget, scale.value, scale.integer) == (NUMBER, 1.0, False)
    assert scale.label == "--acme-scale"
    assert scale.info == "Multiply the norm's weight by this first."
    assert (mode.widget, mode.choices, mode.value) == (DROPDOWN, ("fast", "exact"), "fast")
    assert (layers.widget, layers.value) == (TEXTBOX, "")
    assert "separated by spaces" in layers.info
    assert (bias.widget, bias.value) == (CHECKBOX, False)
    # an optional number left unset is an empty text field: a number field cannot be empty
    assert (limit.widget, limit.value) == (TEXTBOX, "")


def test_the_core_options_of_a_command(martlet_manager):
    """The training command's own options, read from its config class through the registry
    (an optional bool is a three-way choice, a list of words a text field)."""
    martlet_manager("train", "peft")
    cls = catalog.config_class("sft")
    fields = {f.name: f for f in fields_of(cls)}
    assert fields["max_steps"].widget == NUMBER and fields["max_steps"].integer
    assert fields["max_steps"].value == -1
    assert fields["lr_scheduler_type"].widget == DROPDOWN
    assert fields["dataset_hub"].choices[0] == ""  # optional choice: empty keeps the default
    assert (fields["kernels"].widget, fields["kernels"].value) == (TEXTBOX, "auto")
    assert fields["packing"].widget == CHECKBOX
    groups = {g.records[0]: g for g in catalog.option_groups("tuners", exclude=fields)}
    fused = next(f for f in groups["lora"].fields if f.name == "fused_lora")
    assert (fused.widget, fused.choices) == (DROPDOWN, ("", "true", "false"))
    rank = next(f for f in groups["lora"].fields if f.name == "lora_rank")
    assert (rank.widget, rank.value, rank.integer) == (NUMBER, 8, True)


def test_values_are_read_as_the_command_line_reads_them(norm):
    assert value_of(norm["acme_layers"], "1 2  3") == [1, 2, 3]
    assert value_of(norm["acme_limit"], "") is None
    assert value_of(norm["acme_limit"], " 12 ") == 12
    assert value_of(norm["acme_mode"], "EXACT") == "exact"
    with pytest.raises(ConfigError, match="--acme-limit expects int"):
        value_of(norm["acme_limit"], "many")
    with pytest.raises(ConfigError, match="--acme-layers"):
        value_of(norm["acme_layers"], "1 two")


def test_only_changed_values_become_flags(norm):
    fields = list(norm.values())
    unchanged = {"acme_scale": 1, "acme_mode": "fast", "acme_layers": "", "acme_bias": False}
    assert changed_flags(fields, {**unchanged, "acme_limit": ""}) == []
    changed = {"acme_scale": 2.5, "acme_mode": "exact", "acme_layers": "0 3", "acme_bias": True}
    assert changed_flags(fields, {**changed, "acme_limit": "7"}) == [
        "--acme-scale", "2.5", "--acme-mode", "exact", "--acme-layers", "0", "3",
        "--acme-bias", "--acme-limit", "7",
    ]  # fmt: skip


def test_a_bool_whose_default_is_true_is_written_false():
    from dataclasses import dataclass

    from martlet.config import option, specs

    @dataclass
    class Options:
        shuffle: bool = option(True, help="Shuffle.")
        fused: bool | None = option(None, help="Fused kernel.")

    shuffle, fused = (field_for(s) for s in specs(Options).values())
    assert changed_flags([shuffle], {"shuffle": False}) == ["--shuffle", "false"]
    assert changed_flags([fused], {"fused": ""}) == []
    assert changed_flags([fused], {"fused": "false"}) == ["--fused", "false"]
    assert changed_flags([fused], {"fused": "true"}) == ["--fused"]
