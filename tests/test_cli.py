"""The `martlet` CLI end to end: one-file plugins, config commands, errors and --debug."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

LOCAL_TUNER = """
from martlet import hookimpl
from martlet.records import TunerRecord


@hookimpl
def martlet_tuners():
    yield TunerRecord(name="{name}", impl="json:dumps", summary="from a file")
"""

INSTALLED = """
from martlet import hookimpl
from martlet.records import TunerRecord

MARTLET_API = 1


@hookimpl
def martlet_tuners():
    yield TunerRecord(name="fake-lora", impl="json:dumps", summary="installed")
"""

#: a one-file plugin that adds a config command
TRAIN_DEMO = '''
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

import click

from martlet import hookimpl
from martlet.cli import config_command
from martlet.config import option
from martlet.errors import MartletError
from martlet.records import CommandRecord


@dataclass
class TrainDemoConfig:
    model: str = option(help="Model id or path.", aliases=("model_id", "model_type"))
    lora_rank: int = option(8, help="LoRA rank.", aliases=("r",))
    packing: bool = option(False, help="Pack rows into full sequences.")
    dataset: list[str] = option(default_factory=list, help="Dataset specs.")
    model_kwargs: dict = option(default_factory=dict, help="Extra from_pretrained arguments.")
    mode: Literal["sft", "dpo"] = option("sft", help="What to train.")
    seed: int | None = option(42, help="Random seed.")


@config_command(TrainDemoConfig, name="train-demo")
def train_demo(config: TrainDemoConfig) -> None:
    """Train a demo model (prints its config as JSON)."""
    if config.model == "empty":
        raise MartletError("the dataset is empty", why="0 rows after filtering",
                           fix="check --dataset")
    if config.model == "crash":
        raise RuntimeError("a bug in the plugin")
    click.echo(json.dumps(config.__dict__, sort_keys=True))


@hookimpl
def martlet_commands():
    yield CommandRecord(name="train-demo", impl=f"{__name__}:train_demo",
                        summary="Train a demo model.")
'''


@pytest.fixture
def files(tmp_path: Path):
    """Write one-file plugins: ``files(name=source)`` -> their paths."""

    def write(**sources: str) -> list[str]:
        paths = []
        for stem, source in sources.items():
            path = tmp_path / f"{stem}.py"
            path.write_text(source, encoding="utf-8")
            paths.append(str(path))
        return paths

    return write


@pytest.fixture
def demo(files) -> str:
    return files(train_demo=TRAIN_DEMO)[0]


def local_rows(result) -> dict[str, dict]:
    return {row["name"]: row for row in result.json if row["source"] == "local"}


# ------------------------------------------------------------------ one-file plugins


def test_plugin_flag_loads_a_file(files, martlet):
    [path] = files(one=LOCAL_TUNER.format(name="file-tuner"))
    result = martlet("--plugin", path, "plugins", "--json")
    assert result.rc == 0, result
    assert local_rows(result) == {
        "local:one": {
            "name": "local:one",
            "distribution": "local",
            "version": "-",
            "module": path,
            "source": "local",
            "status": "ok",
            "error": None,
            "records": {"tuners": ["file-tuner"]},
        }
    }


@pytest.mark.parametrize(
    "before, after",
    [
        (["--external_plugins", "{a}"], []),
        (["--external-plugins={a}"], []),
        ([], ["--external_plugins", "{a}"]),
        ([], ["--plugin", "{a}"]),
        (["--plugin", "{a}"], ["--plugin={b}"]),
        (["--external_plugins", "{a}", "{b}"], []),
        ([], ["--external_plugins", "{a}", "{b}"]),
    ],
    ids=["swift", "swift-eq", "swift-after", "plugin-after", "repeated", "two", "two-after"],
)
def test_plugin_flag_spellings_and_positions(files, martlet, before, after):
    a, b = files(one=LOCAL_TUNER.format(name="tuner-a"), two=LOCAL_TUNER.format(name="tuner-b"))
    fill = [arg.format(a=a, b=b) for arg in before], [arg.format(a=a, b=b) for arg in after]
    result = martlet(*fill[0], "plugins", "--json", *fill[1])
    assert result.rc == 0, result
    rows = local_rows(result)
    assert rows["local:one"]["records"] == {"tuners": ["tuner-a"]}
    if any("{b}" in arg for arg in before + after):
        assert rows["local:two"]["records"] == {"tuners": ["tuner-b"]}
    else:
        assert set(rows) == {"local:one"}


def test_local_plugin_in_the_table(files, martlet):
    [path] = files(one=LOCAL_TUNER.format(name="file-tuner"))
    result = martlet("plugins", "--plugin", path)
    assert result.rc == 0, result
    row = next(line for line in result.out.splitlines() if line.startswith("local:one"))
    assert re.split(r"\s{2,}", row) == ["local:one", "local", "-", "ok"]


def test_local_plugin_conflicting_with_an_installed_one(site, files, martlet):
    site.dist(
        "fake-good",
        "1.2.0",
        entry_points={"fakegood": "fakeplug_fakegood"},
        modules={"fakeplug_fakegood": INSTALLED},
    )
    [path] = files(clash=LOCAL_TUNER.format(name="FAKE_LORA"))
    result = martlet("--plugin", path, "plugins", site=site)
    assert result.rc == 1, result
    lines = result.err.splitlines()
    assert lines[0] == f"Error: local plugin 'local:clash' ({path}) failed to load"
    assert lines[1] == (
        "  why: registers tuner 'fake-lora', which plugin 'fakegood' (fake-good 1.2.0) also "
        "registers; uninstall one of them or block one with MARTLET_DISABLE_PLUGINS"
    )
    assert "Traceback" not in result.err
    # without the file, the installed plugin is fine
    assert martlet("plugins", "--json", site=site).plugin("fakegood")["status"] == "ok"


def test_local_plugin_with_bad_record(files, martlet):
    [path] = files(bad=LOCAL_TUNER.format(name="bad name"))
    result = martlet("--plugin", path, "version")
    assert result.rc == 1, result
    assert "Error: local plugin 'local:bad'" in result.err
    assert "invalid tuner name 'bad name'" in result.err
    assert "fix: fix the plugin file" in result.err


def test_plugin_file_missing_or_raising(files, martlet, tmp_path):
    result = martlet("--plugin", str(tmp_path / "nope.py"), "version")
    assert result.rc == 1, result
    assert f"Error: plugin file '{tmp_path / 'nope.py'}' not found" in result.err
    [path] = files(raises="raise ValueError('bad file')\n")
    result = martlet("--plugin", path, "version")
    assert result.rc == 1, result
    assert "failed to import" in result.err and "ValueError: bad file" in result.err
    assert "Traceback" not in result.err


def test_plugin_flag_needs_a_file(martlet):
    result = martlet("--plugin")
    assert result.rc == 2, result
    assert "--plugin needs the path of a .py file" in result.err


# ------------------------------------------------------------------- config commands


def run_demo(martlet, demo, *args, **kw):
    return martlet("--plugin", demo, "train-demo", *args, **kw)


def test_config_command_flags(martlet, demo):
    result = run_demo(
        martlet,
        demo,
        "--model-id",
        "m",
        "--r",
        "4",
        "--packing",
        "--dataset",
        "a",
        "b",
        "--dataset",
        "c",
        "--model_kwargs",
        '{"torch_dtype": "bfloat16"}',
        "--mode",
        "DPO",
        "--seed",
        "none",
    )
    assert result.rc == 0, result
    assert json.loads(result.out) == {
        "model": "m",
        "lora_rank": 4,
        "packing": True,
        "dataset": ["a", "b", "c"],
        "model_kwargs": {"torch_dtype": "bfloat16"},
        "mode": "dpo",
        "seed": None,
    }


def test_config_command_listed_in_help(martlet, demo):
    result = martlet("--plugin", demo, "--help")
    assert result.rc == 0, result
    assert re.search(r"^  train-demo\s+Train a demo model\.$", result.out, re.M)


def test_config_command_help_lists_options_and_aliases(martlet, demo):
    result = run_demo(martlet, demo, "--help")
    assert result.rc == 0, result
    out = " ".join(result.out.split())  # undo wrapping
    assert "Usage: martlet train-demo [OPTIONS]" in out
    assert "Train a demo model (prints its config as JSON)." in out
    assert "--model TEXT Model id or path. (also --model-id, --model-type) [required]" in out
    assert "--lora-rank INT LoRA rank. (also --r) [default: 8]" in out
    assert "--packing Pack rows into full sequences." in out
    assert "--dataset TEXT ... Dataset specs." in out
    assert "--model-kwargs JSON" in out
    assert "--mode sft|dpo What to train. [default: sft]" in out
    assert "--config FILE Read options from a YAML or JSON file (flags win)." in out
    assert "--print-config Print the resolved options as YAML and exit." in out
    assert "--kebab-case or --snake_case" in out
    # --help wins even with a missing required option or a bad flag
    assert run_demo(martlet, demo, "--lora-rnak", "3", "-h").rc == 0


def test_print_config(martlet, demo, tmp_path):
    config = tmp_path / "demo.yaml"
    config.write_text(
        "model:\n  model_type: from-file\n"
        "training_args:\n  lora_rank: 16\n  dataset: [x]\n  packing: true\n"
    )
    result = run_demo(martlet, demo, "--config", str(config), "--lora-rank", "32", "--print-config")
    assert result.rc == 0, result
    assert yaml.safe_load(result.out) == {
        "model": "from-file",
        "lora_rank": 32,
        "packing": True,
        "dataset": ["x"],
        "model_kwargs": {},
        "mode": "sft",
        "seed": 42,
    }
    assert "{" not in result.out.splitlines()[0]  # YAML, and the command itself did not run
    # what --print-config prints is a config file that gives the same result
    (tmp_path / "again.yaml").write_text(result.out)
    again = run_demo(martlet, demo, "--config", str(tmp_path / "again.yaml"), "--print-config")
    assert again.out == result.out


def test_config_file_json_and_flags_win(martlet, demo, tmp_path):
    config = tmp_path / "demo.json"
    config.write_text(json.dumps({"model_id": "m", "lora_rank": 2, "seed": 7}))
    result = run_demo(martlet, demo, f"--config={config}", "--seed", "8")
    assert result.rc == 0, result
    data = json.loads(result.out)
    assert (data["model"], data["lora_rank"], data["seed"]) == ("m", 2, 8)


def test_unknown_flag_suggests(martlet, demo):
    result = run_demo(martlet, demo, "--model", "m", "--lora-rnak", "3")
    assert result.rc == 2, result
    assert result.out == ""
    assert result.err == (
        "Error: unknown flag --lora-rnak\n"
        "  why: did you mean --lora-rank?\n"
        "  fix: `--help` lists the options of this command\n"
        "  (--debug shows the traceback)\n"
    )


def test_unknown_key_in_config_file_suggests(martlet, demo, tmp_path):
    config = tmp_path / "demo.yaml"
    config.write_text("model: m\ntraining_args:\n  pakcing: true\n")
    result = run_demo(martlet, demo, "--config", str(config))
    assert result.rc == 2, result
    assert "Error: unknown option 'training_args.pakcing' in demo.yaml" in result.err
    assert "why: did you mean packing?" in result.err


def test_bad_yaml_names_the_line(martlet, demo, tmp_path):
    config = tmp_path / "demo.yaml"
    config.write_text("model: m\nlora_rank: 4\n  packing: true\n")
    result = run_demo(martlet, demo, "--config", str(config))
    assert result.rc == 2, result
    assert re.search(
        r"^Error: demo\.yaml is not valid YAML \(line 3, column \d+\)$", result.err, re.M
    ), result
    assert "Traceback" not in result.err


def test_missing_required_option(martlet, demo):
    result = run_demo(martlet, demo, "--lora-rank", "4")
    assert result.rc == 2, result
    assert "Error: missing required option --model" in result.err


def test_bad_value(martlet, demo):
    result = run_demo(martlet, demo, "--model", "m", "--mode", "ppo")
    assert result.rc == 2, result
    assert "Error: --mode must be one of sft, dpo, got 'ppo'" in result.err


def test_core_commands_are_config_commands(martlet):
    result = martlet("version", "--json", env={"MARTLET_PLUGINS": ""})
    assert result.rc == 0, result
    assert result.json == {"martlet-core": "0.1.0", "plugin_api": 1}
    result = martlet("plugins", "--print-config", "--kind", "tuners", env={"MARTLET_PLUGINS": ""})
    assert yaml.safe_load(result.out) == {"json": False, "kind": "tuners"}


# ------------------------------------------------------------------------- errors


def test_martlet_error_is_one_message_without_traceback(martlet, demo):
    result = run_demo(martlet, demo, "--model", "empty")
    assert result.rc == 1, result
    assert result.err == (
        "Error: the dataset is empty\n"
        "  why: 0 rows after filtering\n"
        "  fix: check --dataset\n"
        "  (--debug shows the traceback)\n"
    )


@pytest.mark.parametrize(
    "args, env",
    [
        (["--debug"], {}),
        ([], {"MARTLET_DEBUG": "1"}),
        ([], {"MARTLET_DEBUG": "true"}),
    ],
    ids=["flag", "env", "env-true"],
)
def test_debug_shows_the_traceback(martlet, demo, args, env):
    result = martlet(*args, "--plugin", demo, "train-demo", "--model", "empty", env=env)
    assert result.rc == 1, result
    assert "Traceback (most recent call last)" in result.err
    assert "in train_demo" in result.err
    assert "Error: the dataset is empty" in result.err
    assert "(--debug shows the traceback)" not in result.err


def test_debug_flag_after_the_command(martlet, demo):
    result = run_demo(martlet, demo, "--model", "empty", "--debug")
    assert result.rc == 1 and "Traceback (most recent call last)" in result.err


def test_debug_off_values(martlet, demo):
    result = run_demo(martlet, demo, "--model", "empty", env={"MARTLET_DEBUG": "0"})
    assert result.rc == 1 and "Traceback" not in result.err


def test_unknown_command_suggests(martlet):
    result = martlet("plugns", env={"MARTLET_PLUGINS": ""})
    assert result.rc == 2, result
    assert result.err.startswith(
        "Error: unknown command 'plugns'\n  why: did you mean 'plugins'?\n"
    )
    assert "Traceback" not in result.err
    result = martlet("verison", env={"MARTLET_PLUGINS": ""})
    assert "did you mean 'version'?" in result.err


def test_unknown_command_with_debug_has_traceback(martlet):
    result = martlet("--debug", "plugns", env={"MARTLET_PLUGINS": ""})
    assert result.rc == 2, result
    assert "Traceback (most recent call last)" in result.err
    assert "UnknownNameError" in result.err


def test_command_names_are_case_and_separator_insensitive(martlet, demo):
    result = martlet("--plugin", demo, "TRAIN_DEMO", "--model", "m")
    assert result.rc == 0, result
    assert json.loads(result.out)["model"] == "m"


def test_help_and_no_arguments(martlet):
    for args in (["--help"], ["-h"]):
        result = martlet(*args, env={"MARTLET_PLUGINS": ""})
        assert result.rc == 0, result
        assert result.out.startswith("Usage: martlet [OPTIONS] COMMAND [ARGS]...")
        assert "--plugin FILE.py" in result.out and "--debug" in result.out
    result = martlet(env={"MARTLET_PLUGINS": ""})
    assert "Usage: martlet" in result.out + result.err


def test_unknown_group_option(martlet):
    result = martlet("--frobnicate", env={"MARTLET_PLUGINS": ""})
    assert result.rc == 2, result
    assert "No such option '--frobnicate'" in result.err
    assert "Traceback" not in result.err


def test_doctor_json(martlet):
    result = martlet("doctor", "--json", env={"MARTLET_PLUGINS": ""})
    assert result.rc == 0, result
    report = result.json
    assert report["martlet-core"] == "0.1.0" and report["plugin_api"] == 1
    assert report["plugins"]["ok"] == ["core"]
    assert {"python", "libraries", "accelerators", "memory", "disk"} <= set(report)
