"""Each tuner takes its own options only, typed and range-checked, from flags as from Python
values; a command composing TunerChoice takes the selected tuner's options and refuses the
others' with the name of the tuner that reads them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest
from martlet import config as cfg
from martlet.config import specs
from martlet.errors import ConfigError
from martlet_peft.options import PER_TUNER, NeftuneOptions, TunerChoice, TunerOptions


@dataclass(kw_only=True)
class Command(TunerChoice):
    """A command that trains with a tuner"""


@pytest.fixture
def peft(martlet_manager):
    return martlet_manager("peft")


def build_from_flags(*flags):
    return cfg.build(Command, flags=cfg.parse_flags(Command, list(flags)).values)


def _records(peft):
    return [r for r in peft.registry.records("tuners") if r.options_class() is not None]


def test_every_tuner_names_its_own_options_class_and_each_takes_neftune(peft):
    classes = {r.name: r.options_class() for r in peft.registry.records("tuners")}
    assert set(classes.values()) == set(PER_TUNER)  # one class each, none shared
    assert len(set(classes.values())) == len(classes)
    assert all(issubclass(c, NeftuneOptions) for c in classes.values())
    assert not [f for f in dataclasses.fields(classes["full"]) if f.name != "neftune_noise_alpha"]


def test_neftune_is_checked_for_every_tuner(peft):
    """NEFTune is martlet-peft's: each of its tuners takes --neftune-noise-alpha, checked."""
    for tuner in ("full", "lora", "boft"):
        config = build_from_flags("--tuner", tuner, "--neftune-noise-alpha", "5")
        assert config.neftune_noise_alpha == 5.0
        with pytest.raises(ConfigError, match="--neftune-noise-alpha must be more than 0"):
            build_from_flags("--tuner", tuner, "--neftune-noise-alpha", "-1")


# an out-of-range value per tuner, and the message it gets
OUT_OF_RANGE = {
    "lora": ("lora_dropout", "1.5", "--lora-dropout must be in [0, 1)"),
    "adalora": ("adalora_init_r", "0", "--adalora-init-r must be at least 1"),
    "vera": ("vera_rank", "0", "--vera-rank must be at least 1"),
    "boft": ("boft_block_size", "0", "--boft-block-size must be at least 1"),
    "loha": ("loha_rank", "-2", "--loha-rank must be at least 1"),
    "lokr": ("lokr_rank", "0", "--lokr-rank must be at least 1"),
    "prompt-tuning": ("num_virtual_tokens", "0", "--num-virtual-tokens must be at least 1"),
    "prefix-tuning": ("num_virtual_tokens", "0", "--num-virtual-tokens must be at least 1"),
    "freeze": ("trainable_layers", "-1", "--trainable-layers must be at least 0"),
    "galore": ("galore_rank", "0", "--galore-rank must be at least 1"),
    "lisa": ("lisa_step_interval", "0", "--lisa-step-interval must be at least 1"),
    "llamapro": ("llamapro_num_new_blocks", "0", "--llamapro-num-new-blocks must be at least 1"),
    "reft": ("reft_rank", "0", "--reft-rank must be at least 1"),
}


@pytest.mark.parametrize("tuner", sorted(OUT_OF_RANGE))
def test_each_tuners_options_are_checked_from_flags(peft, tuner):
    name, bad, message = OUT_OF_RANGE[tuner]
    flag = "--" + name.replace("_", "-")
    config = cfg.build(Command, flags=cfg.parse_flags(Command, ["--tuner", tuner]).values)
    assert config.tuner == tuner and hasattr(config, name)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace(")", r"\)")):
        cfg.build(Command, flags=cfg.parse_flags(Command, ["--tuner", tuner, flag, bad]).values)
    # a value of the wrong type is refused with its expected type
    spec = specs(type(config))[name]
    if spec.type_name() in ("int", "float"):
        with pytest.raises(ConfigError, match=f"{flag} expects {spec.type_name()}"):
            cfg.build(Command, flags={"tuner": tuner, name: "lots"})


@pytest.mark.parametrize("tuner", sorted(OUT_OF_RANGE))
def test_another_tuners_option_is_refused_with_the_tuner_that_reads_it(peft, tuner):
    own = set(specs(cfg.build(Command, values={"tuner": tuner}).__class__))
    foreign = next(
        (o, r.name)
        for r in _records(peft)
        if r.name != tuner
        for o in specs(r.options_class())
        if o not in own
    )
    option, owner = foreign
    with pytest.raises(ConfigError) as info:
        cfg.build(Command, values={"tuner": tuner, option: 1})
    assert f"not of tuner {tuner!r}" in info.value.what
    assert owner in info.value.what


def test_the_combined_class_still_takes_every_tuners_options_for_python_callers():
    fields = {f.name for f in dataclasses.fields(TunerOptions)}
    for cls in PER_TUNER:
        assert {f.name for f in dataclasses.fields(cls)} <= fields
    with pytest.raises(ConfigError, match="--boft-block-size must be at least 1"):
        TunerOptions(boft_block_size=0)


def test_the_moved_fused_lora_option_says_where_it_went(peft):
    """--fused-lora false ran PEFT's own modules; the fused layers are a kernel now, and the
    old flag says how to leave that kernel out instead of being ignored."""
    from martlet_peft.peft_methods import LoraTuner

    LoraTuner().check(build_from_flags("--fused-lora", "true"))  # the old default: accepted
    with pytest.raises(ConfigError, match="no longer an option of the lora tuner") as moved:
        LoraTuner().check(build_from_flags("--fused-lora", "false"))
    assert "--kernels auto,-fused-lora" in str(moved.value)
