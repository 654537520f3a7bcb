"""martlet.cli.main() in-process, on a fresh manager that holds no installed plugin."""

from __future__ import annotations

import json
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
from martlet import hookimpl
from martlet.cli import ConfigCommand, config_command, main
from martlet.config import option

BAD_COMMAND = """
    from martlet import hookimpl
    from martlet.records import CommandRecord

    @hookimpl
    def martlet_commands():
        yield CommandRecord(name="not-click", impl="json:dumps", summary="Not a click command.")
        yield CommandRecord(name="gone", impl="fakeplug_gone_module:cmd", summary="Gone.")
"""


def test_version(fresh_manager, capsys):
    assert main(["version"]) == 0
    assert capsys.readouterr().out == "martlet-core 0.1.0 (plugin API 1)\n"


def test_plugins_json_lists_only_the_core(fresh_manager, capsys):
    assert main(["plugins", "--json"]) == 0
    [core] = json.loads(capsys.readouterr().out)
    assert core["name"] == "core" and core["status"] == "ok"


@pytest.mark.parametrize(
    "command, dist",
    [("sft", "martlet-train"), ("export", "martlet-export"), ("web_ui", "martlet-webui")],
)
def test_command_of_a_package_not_installed_names_it(fresh_manager, capsys, command, dist):
    assert main([command]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"Error: unknown command {command!r}\n")
    assert f"  fix: it is provided by {dist}: pip install {dist}\n" in err


def test_plugin_file_registers_on_the_process_wide_manager(fresh_manager, capsys, tmp_path):
    path = tmp_path / "extra.py"
    path.write_text(
        "from martlet import hookimpl\nfrom martlet.records import LossRecord\n"
        "@hookimpl\ndef martlet_losses():\n"
        "    yield LossRecord(name='extra-loss', impl='json:dumps')\n"
    )
    assert main(["--plugin", str(path), "plugins", "--kind", "losses", "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert (row["name"], row["source"], row["records"]) == (
        "local:extra",
        "local",
        {"losses": ["extra-loss"]},
    )
    assert fresh_manager.registry.get("losses", "extra-loss").origin == f"local:{path}"


def test_command_impl_that_is_not_click(fresh_manager, make_module, capsys):
    fresh_manager.register(make_module("fakeplug_bad_cmds", BAD_COMMAND))
    assert main(["--help"]) == 0  # listing imports nothing
    out = capsys.readouterr().out
    assert "not-click" in out and "Gone." in out
    assert main(["not-click"]) == 1
    err = capsys.readouterr().err
    assert "Error: command 'not-click' from local:fakeplug_bad_cmds is not a click command" in err
    assert "json:dumps is a function" in err
    assert main(["gone"]) == 1
    err = capsys.readouterr().err
    assert "Error: cannot load command 'gone' from 'fakeplug_gone_module:cmd'" in err
    assert "ModuleNotFoundError" in err


def test_exit_codes_follow_the_error(fresh_manager, capsys, tmp_path):
    assert main(["plugins", "--kind", "tunerz"]) == 2  # UnknownNameError
    assert main(["plugins", "--nope"]) == 2  # ConfigError
    assert main(["--plugin", str(tmp_path / "missing.py"), "version"]) == 1  # PluginError
    capsys.readouterr()


def test_warning_display_is_restored(fresh_manager, capsys):
    before = warnings.showwarning
    main(["version"])
    main(["plugns"])
    assert warnings.showwarning is before
    capsys.readouterr()


def test_config_command_needs_a_dataclass():
    with pytest.raises(TypeError):
        config_command(dict)


def test_config_command_object():
    @dataclass
    class Hello:
        who: str = option("world", help="Who to greet.")

    seen = []

    @config_command(Hello)
    def say_hello(config):
        """Say hello."""
        seen.append(config.who)

    assert isinstance(say_hello, ConfigCommand) and isinstance(say_hello, click.Command)
    assert say_hello.name == "say-hello"
    assert say_hello.help == "Say hello."
    say_hello.main(["--who", "you"], standalone_mode=False)
    assert seen == ["you"]


def test_config_command_in_process_print_config(fresh_manager, make_module, capsys):
    fresh_manager.register(
        make_module(
            "fakeplug_doc_cmd",
            """
        from martlet import hookimpl
        from martlet.records import CommandRecord
        @hookimpl
        def martlet_commands():
            yield CommandRecord(name="show", impl="martlet.core_commands:doctor",
                                summary="Doctor under another name.")
    """,
        )
    )
    assert main(["show", "--print-config", "--json"]) == 0
    assert capsys.readouterr().out == "json: true\n"


def test_plugin_file_path_from_cwd(fresh_manager, capsys, tmp_path, monkeypatch):
    (tmp_path / "rel.py").write_text("X = 1\n")
    monkeypatch.chdir(tmp_path)
    assert main(["--plugin", "rel.py", "plugins", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["module"] for r in rows if r["source"] == "local"] == [str(Path(tmp_path, "rel.py"))]


def test_config_commands_call_martlet_configure(fresh_manager, capsys):
    seen = []

    class Observer:
        @hookimpl
        def martlet_configure(self, config):
            seen.append(config)

    fresh_manager.register(Observer(), name="observer")
    assert main(["version", "--json"]) == 0
    [config] = seen
    assert type(config).__name__ == "VersionConfig" and config.json is True
    assert main(["version", "--print-config"]) == 0  # printing is not running
    assert len(seen) == 1
    capsys.readouterr()


CHECKED_COMMAND = """
from dataclasses import dataclass

from martlet import hookimpl
from martlet.cli import config_command
from martlet.config import option
from martlet.errors import ConfigError
from martlet.records import CommandRecord

RAN = []


@dataclass
class BatchConfig:
    batch_size: int = option(1, help="Rows per batch.")
    mode: str = option("a", help="a or b.")

    def __post_init__(self):
        if self.mode not in ("a", "b"):
            raise ConfigError(f"--mode must be a or b, got {self.mode!r}")


def check(config):
    if config.batch_size < 1:
        raise ConfigError("--batch-size must be at least 1", fix="e.g. --batch-size 4")


@config_command(BatchConfig, name="batch", check=check)
def batch(config):
    RAN.append(config.batch_size)


@hookimpl
def martlet_commands():
    yield CommandRecord(name="batch", impl=f"{__name__}:batch", summary="A checked command.")
"""


def test_print_config_refuses_what_the_run_would_refuse(fresh_manager, capsys, tmp_path):
    path = tmp_path / "checked.py"
    path.write_text(CHECKED_COMMAND)
    plugin = ["--plugin", str(path)]
    # the command's check: --print-config exits with the run's error, printing no config
    assert main([*plugin, "batch", "--batch-size", "0", "--print-config"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("Error: --batch-size must be at least 1\n  fix: e.g. --batch-size 4\n")
    ran = sys.modules["martlet_local_checked"].RAN
    assert main(["batch", "--batch-size", "0"]) == 2 and ran == []  # the run refuses it too
    assert "Error: --batch-size must be at least 1" in capsys.readouterr().err
    # the config class's own validation
    assert main(["batch", "--mode", "c", "--print-config"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "Error: --mode must be a or b, got 'c'" in err
    # a config both accept prints, and printing is not running
    assert main(["batch", "--batch-size", "4", "--print-config"]) == 0
    assert capsys.readouterr().out == "batch_size: 4\nmode: a\n" and ran == []
    assert main(["batch", "--batch-size", "4"]) == 0 and ran == [4]


def test_an_unknown_command_names_the_plugins_that_failed_to_load(site, discover, capsys):
    from martlet.manager import set_manager

    site.dist(
        "fake-broken",
        "0.3",
        entry_points={"broken": "fakeplug_broken"},
        modules={"fakeplug_broken": "raise ImportError('no module named shiny')\n"},
    )
    manager, _ = discover({})
    previous = set_manager(manager)
    try:
        assert main(["shinycmd"]) == 2
    finally:
        set_manager(previous)
    err = capsys.readouterr().err
    assert err.startswith("Error: unknown command 'shinycmd'\n")
    assert "failed to load, one of which may provide it" in err
    assert "plugin 'broken' (fake-broken 0.3)" in err and "no module named shiny" in err
    assert "pip install --force-reinstall fake-broken" in err


@dataclass
class _PickTuner:
    tuner: str = option("lora", help="The tuner.", names_of="tuners")


_PICK = config_command(_PickTuner, name="pick")(lambda config: None)


def test_help_lists_the_installed_names_of_a_record_option(fresh_manager, make_module, capsys):
    """An option that names a record lists what is installed now, plugins' names included."""
    fresh_manager.register(
        make_module(
            "fakeplug_pick",
            """
        from martlet import hookimpl
        from martlet.records import CommandRecord, TunerRecord
        @hookimpl
        def martlet_commands():
            yield CommandRecord(name="pick", impl="MODULE:_PICK", summary="Pick.")
        @hookimpl
        def martlet_tuners():
            yield TunerRecord(name="zebra-lora", impl="json:dumps", summary="A plugin's tuner.")
    """.replace("MODULE", __name__),
        )
    )
    assert main(["pick", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "The tuner. Installed: zebra-lora." in out
