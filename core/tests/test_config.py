"""Typed configs: defaults < file < flags, flag spellings, sections, errors with suggestions."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional

import pytest
from martlet.config import (
    build,
    coerce,
    flatten,
    option,
    parse_flags,
    read_file,
    specs,
    to_dict,
    to_yaml,
)
from martlet.errors import ConfigError


@dataclass
class TrainConfig:
    model: str = option(help="Model id or path.", aliases=("model_id", "model_type"))
    lora_rank: int = option(8, help="LoRA rank.", aliases=("r",))
    learning_rate: float = option(1e-4, help="Peak learning rate.", aliases=("lr",))
    packing: bool = option(False, help="Pack rows.")
    gradient_checkpointing: bool = option(True, help="Recompute activations.")
    dataset: list[str] = option(default_factory=list, help="Dataset specs.")
    target_modules: tuple[str, ...] = option(default_factory=tuple, help="Modules to adapt.")
    model_kwargs: dict[str, Any] = option(default_factory=dict, help="Extra model kwargs.")
    mode: Literal["sft", "dpo", "kto"] = option("sft", help="Training mode.")
    seed: Optional[int] = option(42, help="Random seed.")  # noqa: UP045 - both spellings
    output_dir: str | None = option(None, help="Where to write.")


def run(args: list[str], **kw: Any) -> TrainConfig:
    parsed = parse_flags(TrainConfig, args)
    return build(TrainConfig, file=parsed.config_file, flags=parsed.values, **kw)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ----------------------------------------------------------------------- precedence


def test_defaults_apply():
    cfg = run(["--model", "m"])
    assert cfg == TrainConfig(model="m")
    assert cfg.lora_rank == 8 and cfg.dataset == [] and cfg.seed == 42 and cfg.output_dir is None


def test_file_beats_defaults_and_flags_beat_file(tmp_path: Path):
    path = write(tmp_path, "c.yaml", "model: from-file\nlora_rank: 16\nlearning_rate: 0.5\n")
    cfg = run(["--config", str(path)])
    assert (cfg.model, cfg.lora_rank, cfg.learning_rate, cfg.packing) == (
        "from-file",
        16,
        0.5,
        False,
    )
    cfg = run(["--lora-rank", "32", f"--config={path}"])
    assert (cfg.model, cfg.lora_rank, cfg.learning_rate) == ("from-file", 32, 0.5)


def test_python_values_sit_between_file_and_flags(tmp_path: Path):
    path = write(tmp_path, "c.yaml", "model: file\nlora_rank: 16\nseed: 1\n")
    flags = parse_flags(TrainConfig, ["--seed", "3"]).values
    cfg = build(TrainConfig, file=path, values={"lora_rank": 4, "seed": 2}, flags=flags)
    assert (cfg.model, cfg.lora_rank, cfg.seed) == ("file", 4, 3)


def test_flag_list_replaces_file_list(tmp_path: Path):
    path = write(tmp_path, "c.yaml", "model: m\ndataset: [a, b]\n")
    assert run(["--config", str(path)]).dataset == ["a", "b"]
    assert run(["--config", str(path), "--dataset", "c"]).dataset == ["c"]


# ----------------------------------------------------------------------------- flags


@pytest.mark.parametrize(
    "flag", ["--lora-rank", "--lora_rank", "--LORA-RANK", "--r", "--lora-rank=", "--lora_rank="]
)
def test_kebab_snake_and_alias_flags(flag):
    args = [flag + "4"] if flag.endswith("=") else [flag, "4"]
    assert run(["--model", "m", *args]).lora_rank == 4


@pytest.mark.parametrize("flag", ["--model", "--model-id", "--model_id", "--model-type"])
def test_aliases_of_text_option(flag):
    assert run([flag, "qwen"]).model == "qwen"


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--packing"], True),
        (["--packing", "true"], True),
        (["--packing", "yes"], True),
        (["--packing", "1"], True),
        (["--packing", "false"], False),
        (["--packing", "False"], False),
        (["--packing", "0"], False),
        (["--packing=no"], False),
        (["--no-packing"], False),
        (["--no_packing"], False),
        (["--packing", "--lora-rank", "2"], True),
        ([], False),
    ],
)
def test_boolean_flags(args, expected):
    assert run(["--model", "m", *args]).packing is expected


def test_negating_a_true_default():
    assert run(["--model", "m"]).gradient_checkpointing is True
    assert run(["--model", "m", "--no-gradient-checkpointing"]).gradient_checkpointing is False


def test_no_prefix_only_for_booleans():
    with pytest.raises(ConfigError, match="unknown flag --no-lora-rank"):
        run(["--model", "m", "--no-lora-rank"])


def test_boolean_flag_with_bad_value_is_a_positional_error():
    with pytest.raises(ConfigError, match="unexpected argument 'maybe'"):
        run(["--model", "m", "--packing", "maybe"])
    with pytest.raises(ConfigError, match="--packing expects bool, got 'maybe'"):
        run(["--model", "m", "--packing=maybe"])


def test_list_options_take_several_values_and_repeat():
    cfg = run(["--model", "m", "--dataset", "a", "b", "--dataset", "c", "--lora-rank", "2"])
    assert cfg.dataset == ["a", "b", "c"]
    assert cfg.lora_rank == 2
    cfg = run(["--dataset=x", "--model", "m", "--target-modules", "q_proj", "v_proj"])
    assert cfg.dataset == ["x"]
    assert cfg.target_modules == ("q_proj", "v_proj")


def test_list_option_needs_a_value():
    with pytest.raises(ConfigError, match="flag --dataset needs at least one value"):
        run(["--model", "m", "--dataset", "--packing"])


def test_dict_option_from_json():
    cfg = run(["--model", "m", "--model-kwargs", '{"attn_implementation": "sdpa", "n": 2}'])
    assert cfg.model_kwargs == {"attn_implementation": "sdpa", "n": 2}


def test_dict_option_bad_json():
    with pytest.raises(ConfigError) as info:
        run(["--model", "m", "--model-kwargs", "{attn: sdpa}"])
    err = info.value
    assert "--model-kwargs expects a JSON object" in err.what
    assert err.why and "line 1" in err.why
    assert err.fix and "quote it" in err.fix
    with pytest.raises(ConfigError, match="--model-kwargs expects JSON"):
        run(["--model", "m", "--model-kwargs", "[1, 2]"])


def test_literal_choices():
    assert run(["--model", "m", "--mode", "DPO"]).mode == "dpo"
    with pytest.raises(ConfigError) as info:
        run(["--model", "m", "--mode", "kot"])
    assert "--mode must be one of sft, dpo, kto, got 'kot'" in info.value.what
    assert "did you mean kto?" in (info.value.fix or "")


@pytest.mark.parametrize("text", ["none", "None", "null", "~"])
def test_optional_takes_none(text):
    cfg = run(["--model", "m", "--seed", text, "--output-dir", text])
    assert cfg.seed is None and cfg.output_dir is None


def test_none_for_a_non_optional_is_text_or_error():
    assert run(["--model", "none"]).model == "none"
    with pytest.raises(ConfigError, match="--lora-rank expects int, got 'none'"):
        run(["--model", "m", "--lora-rank", "none"])


def test_type_errors_name_the_flag():
    with pytest.raises(ConfigError, match="--lora-rank expects int, got 'eight'"):
        run(["--model", "m", "--lora-rank", "eight"])
    with pytest.raises(ConfigError, match="--learning-rate expects float, got 'fast'"):
        run(["--model", "m", "--lr", "fast"])


def test_numbers_accept_underscores_and_negatives():
    cfg = run(["--model", "m", "--seed", "1_000", "--lr", "-1e-3"])
    assert cfg.seed == 1000 and cfg.learning_rate == -1e-3


def test_unknown_flag_suggests_closest():
    with pytest.raises(ConfigError) as info:
        run(["--model", "m", "--lora-rnak", "4"])
    err = info.value
    assert err.what == "unknown flag --lora-rnak"
    assert err.why == "did you mean --lora-rank?"
    assert "--help" in (err.fix or "")
    assert err.exit_code == 2
    with pytest.raises(ConfigError, match="did you mean --learning-rate"):
        run(["--model", "m", "--learning_rat", "1"])


def test_unknown_flag_without_close_match():
    with pytest.raises(ConfigError) as info:
        run(["--model", "m", "--zzzzqqq", "1"])
    assert info.value.why is None


def test_flag_needs_a_value():
    with pytest.raises(ConfigError, match=r"flag --model needs a value \(text\)"):
        run(["--model"])
    with pytest.raises(ConfigError, match="flag --model needs a value"):
        run(["--model", "--lora-rank", "4"])
    with pytest.raises(ConfigError, match="--config needs a file path"):
        run(["--model", "m", "--config"])


def test_unexpected_positional_argument():
    with pytest.raises(ConfigError, match="unexpected argument 'extra'"):
        run(["--model", "m", "extra"])


def test_missing_required_option():
    with pytest.raises(ConfigError) as info:
        run(["--lora-rank", "4"])
    assert info.value.what == "missing required option --model"
    assert "--config" in (info.value.fix or "")


def test_print_config_flag_is_recognised():
    parsed = parse_flags(TrainConfig, ["--model", "m", "--print-config"])
    assert parsed.print_config and parsed.values == {"model": "m"}
    assert parse_flags(TrainConfig, ["--print_config"]).print_config


def test_positional_options():
    @dataclass
    class Cmd:
        source: str = option(positional=True, help="what")
        extra: list[str] = option(default_factory=list, positional=True)
        flag: bool = option(False)

    cfg = build(Cmd, flags=parse_flags(Cmd, ["a", "--flag", "b", "c"]).values)
    assert (cfg.source, cfg.extra, cfg.flag) == ("a", ["b", "c"], True)
    cfg = build(Cmd, flags=parse_flags(Cmd, ["--", "--not-a-flag"]).values)
    assert cfg.source == "--not-a-flag"


# ----------------------------------------------------------------------------- files


def test_yaml_sections_flatten(tmp_path: Path):
    path = write(
        tmp_path,
        "c.yaml",
        "model_args:\n  model_id: qwen\n"
        "training_args:\n  lora-rank: 4\n  lr: 0.5\n  dataset: [a, b]\n"
        "rlhf_args:\n  mode: dpo\n"
        "seed: 7\n",
    )
    cfg = run(["--config", str(path)])
    assert (cfg.model, cfg.lora_rank, cfg.learning_rate, cfg.dataset, cfg.mode, cfg.seed) == (
        "qwen",
        4,
        0.5,
        ["a", "b"],
        "dpo",
        7,
    )


def test_nested_sections_flatten(tmp_path: Path):
    path = write(tmp_path, "c.yaml", "train:\n  lora:\n    r: 2\nmodel: m\n")
    assert run(["--config", str(path)]).lora_rank == 2


def test_section_named_like_an_option(tmp_path: Path):
    # `model:` is the section DESIGN names, and also an option of every training config
    path = write(
        tmp_path, "c.yaml", "model:\n  model: qwen\n  model_type: qwen\ntraining_args:\n  r: 4\n"
    )
    cfg = run(["--config", str(path)])
    assert (cfg.model, cfg.lora_rank) == ("qwen", 4)


def test_dict_option_in_a_file_is_not_a_section(tmp_path: Path):
    path = write(tmp_path, "c.yaml", "model: m\nmodel_kwargs:\n  torch_dtype: bfloat16\n")
    assert run(["--config", str(path)]).model_kwargs == {"torch_dtype": "bfloat16"}


def test_same_option_twice_with_different_values_is_an_error(tmp_path: Path):
    path = write(tmp_path, "c.yaml", "model_args:\n  model: a\ntraining_args:\n  model_id: b\n")
    with pytest.raises(ConfigError) as info:
        run(["--config", str(path)])
    assert "option 'model' is set twice in c.yaml" in info.value.what
    assert "'model_args.model'" in info.value.what
    assert "'training_args.model_id'" in info.value.what


def test_same_option_twice_with_same_value_is_fine(tmp_path: Path):
    path = write(tmp_path, "c.yaml", "model_args:\n  model: a\ntraining_args:\n  model: a\n")
    assert run(["--config", str(path)]).model == "a"


def test_unknown_key_in_file_suggests_closest(tmp_path: Path):
    path = write(tmp_path, "c.yaml", "model: m\ntraining_args:\n  lora_rnak: 4\n")
    with pytest.raises(ConfigError) as info:
        run(["--config", str(path)])
    err = info.value
    assert err.what == "unknown option 'training_args.lora_rnak' in c.yaml"
    assert err.why == "did you mean lora_rank?"
    assert err.exit_code == 2


def test_unknown_key_in_python_values():
    with pytest.raises(ConfigError, match="unknown option 'lora_rnak'") as info:
        build(TrainConfig, values={"model": "m", "lora_rnak": 1})
    assert info.value.why == "did you mean lora_rank?"


@pytest.mark.parametrize(
    "text, line",
    [
        ("model: m\nlora_rank: 4\n  bad: indent\n", 3),
        ("model: m\ndataset: [a, b\nseed: 1\n", 3),
        ("model: m\n\n\n\tseed: 1\n", 4),
    ],
)
def test_bad_yaml_names_the_line(tmp_path: Path, text, line):
    path = write(tmp_path, "bad.yaml", text)
    with pytest.raises(ConfigError) as info:
        run(["--config", str(path)])
    assert f"bad.yaml is not valid YAML (line {line}," in info.value.what
    assert info.value.why


def test_json_file(tmp_path: Path):
    path = write(tmp_path, "c.json", json.dumps({"model": "m", "training_args": {"r": 3}}))
    cfg = run(["--config", str(path), "--packing"])
    assert (cfg.model, cfg.lora_rank, cfg.packing) == ("m", 3, True)


def test_bad_json_names_the_line(tmp_path: Path):
    path = write(tmp_path, "c.json", '{\n  "model": "m",\n  "lora_rank": four\n}\n')
    with pytest.raises(ConfigError, match=r"c.json is not valid JSON \(line 3, column 16\)"):
        run(["--config", str(path)])


def test_yml_suffix_and_empty_file(tmp_path: Path):
    path = write(tmp_path, "c.yml", "model: m\n")
    assert run(["--config", str(path)]).model == "m"
    assert read_file(write(tmp_path, "empty.yaml", "")) == {}


def test_file_must_hold_a_mapping(tmp_path: Path):
    with pytest.raises(ConfigError, match="must hold a mapping of options, not a list"):
        read_file(write(tmp_path, "l.yaml", "- a\n- b\n"))


def test_missing_file(tmp_path: Path):
    with pytest.raises(ConfigError, match="not found") as info:
        run(["--config", str(tmp_path / "nope.yaml")])
    assert "--config" in (info.value.fix or "")


def test_file_value_of_wrong_type_names_the_option(tmp_path: Path):
    path = write(tmp_path, "c.yaml", "model: m\nlora_rank: 1.5\n")
    with pytest.raises(ConfigError, match="option 'lora_rank' in c.yaml expects int, got 1.5"):
        run(["--config", str(path)])
    path = write(tmp_path, "c.yaml", "model: m\npacking: 3\n")
    with pytest.raises(ConfigError, match="option 'packing' in c.yaml expects bool"):
        run(["--config", str(path)])


def test_file_values_are_coerced(tmp_path: Path):
    path = write(
        tmp_path,
        "c.yaml",
        "model: 7\nlearning_rate: 1e-5\ndataset: single\npacking: 'yes'\n"
        "model_kwargs: '{\"a\": 1}'\nseed: null\ntarget_modules: [q, v]\n",
    )
    cfg = run(["--config", str(path)])
    assert cfg.model == "7"
    assert cfg.learning_rate == 1e-5
    assert cfg.dataset == ["single"]
    assert cfg.packing is True
    assert cfg.model_kwargs == {"a": 1}
    assert cfg.seed is None
    assert cfg.target_modules == ("q", "v")


# ------------------------------------------------------------------------- helpers


def test_flatten_maps_aliases_to_option_names():
    assert flatten(TrainConfig, {"Model-Type": "x", "args": {"LR": 1}}, "f") == {
        "model": "x",
        "learning_rate": 1,
    }


def test_specs_describe_options():
    all_specs = specs(TrainConfig)
    rank = all_specs["lora_rank"]
    assert (rank.flag, rank.aliases, rank.help, rank.required) == (
        "--lora-rank",
        ("r",),
        "LoRA rank.",
        False,
    )
    assert all_specs["model"].required
    assert all_specs["packing"].is_bool and all_specs["dataset"].is_list
    assert all_specs["mode"].type_name() == "sft|dpo|kto"
    assert all_specs["model_kwargs"].type_name() == "JSON"
    with pytest.raises(TypeError):
        specs(int)


def test_coerce_bool_int_float_edges():
    with pytest.raises(ConfigError):
        coerce(True, int, "x")
    with pytest.raises(ConfigError):
        coerce(True, float, "x")
    with pytest.raises(ConfigError):
        coerce({"a": 1}, str, "x")
    assert coerce(2.0, int, "x") == 2
    assert coerce(None, Any, "x") is None
    with pytest.raises(ConfigError, match="needs a value of type int, got nothing"):
        coerce(None, int, "x")


def test_to_dict_and_yaml_round_trip(tmp_path: Path):
    cfg = run(["--model", "m", "--target-modules", "q", "--model-kwargs", '{"a": 1}'])
    data = to_dict(cfg)
    assert data["target_modules"] == ["q"] and data["model_kwargs"] == {"a": 1}
    path = write(tmp_path, "round.yaml", to_yaml(cfg))
    assert run(["--config", str(path)]) == cfg


def test_an_option_of_another_command_or_plugin_says_where_it_lives(tmp_path):
    from dataclasses import dataclass as _dc

    from martlet.config import build, option, parse_flags
    from martlet.errors import ConfigError

    @_dc
    class Cmd:
        lr: float = option(1e-4, help="lr")

    Cmd.foreign_options = {  # a class attribute, not a field
        "beta": "`martlet rlhf` (martlet-align)",
        "deepspeed_config": "martlet-deepspeed",
    }

    with pytest.raises(ConfigError, match="flag --beta is not an option") as err:
        parse_flags(Cmd, ["--beta", "0.1"])
    assert "martlet rlhf" in err.value.why
    file = tmp_path / "c.yaml"
    file.write_text("rlhf_args:\n  beta: 0.1\n")
    with pytest.raises(ConfigError, match="rlhf_args.beta"):
        build(Cmd, file=file)
    file.write_text("deepspeed_config:\n  zero_stage: 2\n")
    with pytest.raises(ConfigError, match="martlet-deepspeed"):
        build(Cmd, file=file)
    with pytest.raises(ConfigError, match="did you mean"):
        parse_flags(Cmd, ["--lrr", "1"])
