"""Discovery against fake installed distributions, through the real CLI in a subprocess.

The module-scoped "zoo" site installs one plugin of every sort at once: a working one, and one
for each way a plugin can fail. Tests that need the environment variables build small sites of
their own, whose entry modules leave a marker file when imported.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

GOOD = """
    from martlet import hookimpl
    from martlet.records import CommandRecord, TunerRecord

    MARTLET_API = 1

    @hookimpl
    def martlet_tuners():
        yield TunerRecord(name="fake-lora", impl="fakeplug_good_impl:Tuner",
                          summary="A fake tuner.", aliases=("flora",))

    @hookimpl
    def martlet_commands():
        yield CommandRecord(name="fake-hello", impl="fakeplug_good_cmd:hello",
                            summary="Greet from the fake plugin.")
"""

GOOD_CMD = """
    import pathlib

    import click

    pathlib.Path(__file__).with_name("cmd-imported.marker").touch()

    @click.command()
    @click.option("--name", default="world", help="Who to greet.")
    def hello(name):
        \"\"\"Greet someone.\"\"\"
        click.echo(f"hello {name}")
"""

BROKEN = """
    MARTLET_API = 1
    import fakeplug_shiny_kernels  # not installed
"""


def shared(plugin: str) -> str:
    return f"""
    from martlet import hookimpl
    from martlet.records import CommandRecord, TunerRecord

    MARTLET_API = 1

    @hookimpl
    def martlet_tuners():
        yield TunerRecord(name="fake-shared", impl="{plugin}:Tuner")

    @hookimpl
    def martlet_commands():
        yield CommandRecord(name="fake-shared-cmd", impl="{plugin}:cmd", summary="Shared.")
    """


def yields(record: str) -> str:
    return f"""
    from martlet import hookimpl
    from martlet.records import LossRecord, TunerRecord

    MARTLET_API = 1

    @hookimpl
    def martlet_tuners():
        yield {record}
    """


#: plugin name -> (distribution, version, module source, the start of its error)
ZOO = {
    "fakegood": ("fake-good", "1.2.0", GOOD, None),
    "fakebroken": (
        "fake-broken",
        "0.3",
        BROKEN,
        "import failed: ModuleNotFoundError: No module named 'fakeplug_shiny_kernels'",
    ),
    "fakedupa": (
        "fake-dup-a",
        "1.0",
        shared("fakeplug_fakedupa"),
        "registers tuner 'fake-shared', which plugin 'fakedupb' (fake-dup-b 2.0) also registers",
    ),
    "fakedupb": (
        "fake-dup-b",
        "2.0",
        shared("fakeplug_fakedupb"),
        "registers tuner 'fake-shared', which plugin 'fakedupa' (fake-dup-a 1.0) also registers",
    ),
    "fakefuture": (
        "fake-future",
        "9.0",
        "MARTLET_API = 99\n",
        "built for plugin API 99, but this martlet-core speaks API 1; "
        "upgrade or downgrade fake-future to a release for API 1",
    ),
    "fakenoapi": (
        "fake-noapi",
        "0.1",
        "VALUE = 1\n",
        "declares no MARTLET_API; add `MARTLET_API = 1` to fakeplug_fakenoapi",
    ),
    "fakebadname": (
        "fake-badname",
        "0.1",
        yields('TunerRecord(name="bad name!", impl="pkg.mod:X")'),
        "martlet_tuners() raised: invalid tuner name 'bad name!'",
    ),
    "fakebadimpl": (
        "fake-badimpl",
        "0.1",
        yields('TunerRecord(name="fake-x", impl="pkg.mod.Thing")'),
        "martlet_tuners() raised: record 'tuners:fake-x': impl 'pkg.mod.Thing' is not an "
        "import string",
    ),
    "fakewrongtype": (
        "fake-wrongtype",
        "0.1",
        yields('LossRecord(name="fake-loss", impl="pkg.mod:X")'),
        "martlet_tuners() yielded LossRecord, not TunerRecord",
    ),
}
FAILING = [name for name, (*_, error) in ZOO.items() if error]


@pytest.fixture(scope="module")
def zoo(tmp_path_factory, fake_site_factory):
    site = fake_site_factory(tmp_path_factory.mktemp("zoo"))
    for name, (dist, version, source, _) in ZOO.items():
        site.dist(
            dist,
            version,
            entry_points={name: f"fakeplug_{name}"},
            modules={f"fakeplug_{name}": source},
        )
    site.module("fakeplug_good_cmd", GOOD_CMD)
    return site


def marker(site, clear: bool = False) -> Path:
    """The file the fake command's module leaves when imported (removed first if ``clear``)."""
    path = site.root / "cmd-imported.marker"
    if clear:
        path.unlink(missing_ok=True)
    return path


# --------------------------------------------------------------------- warnings


def test_each_failed_plugin_warns_once_in_one_line(zoo, martlet):
    result = martlet("version", site=zoo)
    assert result.rc == 0, result
    assert result.out == "martlet-core 0.1.0 (plugin API 1)\n"
    for line in result.err.splitlines():
        assert line.startswith("martlet: warning: "), result
    for name in FAILING:
        dist, version, _, error = ZOO[name]
        prefix = f"plugin {name!r} ({dist} {version}) skipped: "
        mine = [w for w in result.warnings if w.startswith(prefix)]
        assert len(mine) == 1, (name, result.err)
        assert mine[0].startswith(prefix + error), mine[0]
    assert not [w for w in result.warnings if "fakegood" in w]


# ------------------------------------------------------------------- plugins --json


def test_plugins_json(zoo, martlet):
    marker(zoo, clear=True)
    result = martlet("plugins", "--json", site=zoo)
    assert result.rc == 0, result
    good = result.plugin("fakegood")
    assert good == {
        "name": "fakegood",
        "distribution": "fake-good",
        "version": "1.2.0",
        "module": "fakeplug_fakegood",
        "source": "entry-point",
        "status": "ok",
        "error": None,
        "records": {"commands": ["fake-hello"], "tuners": ["fake-lora"]},
    }
    for name in FAILING:
        dist, version, _, error = ZOO[name]
        row = result.plugin(name)
        assert (row["distribution"], row["version"], row["status"]) == (dist, version, "failed")
        assert row["error"].startswith(error), row
        assert row["records"] == {}, row
    core = result.plugin("core")
    assert (core["source"], core["status"]) == ("builtin", "ok")
    assert not marker(zoo).exists()


def test_plugins_json_kind_filter(zoo, martlet):
    result = martlet("plugins", "--json", "--kind", "tuner", site=zoo)
    assert result.rc == 0, result
    assert result.plugin("fakegood")["records"] == {"tuners": ["fake-lora"]}
    names = {row["name"] for row in result.json}
    assert "core" not in names and not names & set(FAILING)
    assert all(set(row["records"]) == {"tuners"} for row in result.json)


def test_plugins_table(zoo, martlet):
    result = martlet("plugins", site=zoo)
    assert result.rc == 0, result
    lines = result.out.splitlines()
    assert re.split(r"\s{2,}", lines[0]) == ["NAME", "DISTRIBUTION", "VERSION", "STATUS"]
    rows = {re.split(r"\s{2,}", line)[0]: line for line in lines if not line.startswith(" ")}
    assert re.split(r"\s{2,}", rows["fakegood"]) == ["fakegood", "fake-good", "1.2.0", "ok"]
    assert re.split(r"\s{2,}", rows["fakebroken"]) == ["fakebroken", "fake-broken", "0.3", "failed"]
    block = lines[lines.index(rows["fakegood"]) + 1 :]
    assert block[:2] == ["    tuners: fake-lora", "    commands: fake-hello"]
    block = lines[lines.index(rows["fakebroken"]) + 1 :]
    assert block[0] == "    error: " + ZOO["fakebroken"][3]
    assert "\x1b[" not in result.out  # no colour codes when not on a terminal


def test_plugins_kind_filter_with_nothing_registered(zoo, martlet):
    result = martlet("plugins", "--kind", "eval_tasks", site=zoo, env={"MARTLET_PLUGINS": ""})
    assert result.rc == 0, result
    assert result.out == "no plugins register eval_tasks\n"


def test_plugins_unknown_kind(zoo, martlet):
    result = martlet("plugins", "--kind", "tunerz", site=zoo)
    assert result.rc == 2, result
    assert "Error: unknown kind 'tunerz'" in result.err
    assert "did you mean tuners" in result.err


# ----------------------------------------------------------- the CLI keeps working


def test_help_lists_plugin_command_without_importing_it(zoo, martlet):
    marker(zoo, clear=True)
    result = martlet("--help", site=zoo)
    assert result.rc == 0, result
    assert re.search(r"^  fake-hello\s+Greet from the fake plugin\.$", result.out, re.M), result
    for core in ("doctor", "plugins", "version"):
        assert re.search(rf"^  {core}\s+\S", result.out, re.M)
    assert not marker(zoo).exists()


def test_plugin_command_runs_when_invoked(zoo, martlet):
    marker(zoo, clear=True)
    result = martlet("fake-hello", "--name", "martlet", site=zoo)
    assert result.rc == 0, result
    assert result.out == "hello martlet\n"
    assert marker(zoo).exists()
    result = martlet("FAKE_HELLO", "--help", site=zoo)
    assert result.rc == 0, result
    assert "Usage: martlet fake-hello [OPTIONS]" in result.out
    assert "Who to greet." in result.out


def test_conflicting_command_names_both_distributions(zoo, martlet):
    result = martlet("fake-shared-cmd", site=zoo)
    assert result.rc == 1, result
    assert (
        "Error: command 'fake-shared-cmd' is registered by more than one plugin: "
        "plugin 'fakedupa' (fake-dup-a 1.0) and plugin 'fakedupb' (fake-dup-b 2.0)"
    ) in result.err
    assert "MARTLET_DISABLE_PLUGINS" in result.err
    assert "Traceback" not in result.err


def test_conflicting_tuner_resolves_to_an_error_naming_both(zoo, martlet, tmp_path):
    # resolve through a one-file plugin's command, the way a training command would
    (tmp_path / "resolve.py").write_text(RESOLVE)
    result = martlet(
        "--plugin", str(tmp_path / "resolve.py"), "resolve", "tuners", "fake-shared", site=zoo
    )
    assert result.rc == 1, result
    assert (
        "Error: tuner 'fake-shared' is registered by more than one plugin: "
        "plugin 'fakedupa' (fake-dup-a 1.0) and plugin 'fakedupb' (fake-dup-b 2.0)"
    ) in result.err
    ok = martlet("--plugin", str(tmp_path / "resolve.py"), "resolve", "tuner", "FLORA", site=zoo)
    assert ok.rc == 0, ok
    assert ok.out == "fake-lora fakeplug_good_impl:Tuner fake-good\n"


RESOLVE = '''
import click

from martlet import hookimpl, registry
from martlet.records import CommandRecord


@click.command()
@click.argument("kind")
@click.argument("name")
def resolve(kind, name):
    """Resolve a name."""
    record = registry.get(kind, name)
    click.echo(f"{record.name} {record.impl} {record.origin}")


@hookimpl
def martlet_commands():
    yield CommandRecord(name="resolve", impl=f"{__name__}:resolve", summary="Resolve a name.")
'''


# ------------------------------------------------------------------------ strict mode


def test_strict_mode_makes_a_failure_an_error(zoo, martlet):
    result = martlet("version", site=zoo, env={"MARTLET_STRICT_PLUGINS": "1"})
    assert result.rc == 1, result
    assert result.out == ""
    assert re.search(
        r"^Error: plugin '\w+' \(fake-[\w-]+ [\d.]+\) failed to load$", result.err, re.M
    ), result
    assert "(MARTLET_STRICT_PLUGINS=1 makes every plugin failure an error)" in result.err
    assert "  fix: fix or reinstall it, or block it with MARTLET_DISABLE_PLUGINS=" in result.err
    assert "Traceback" not in result.err


def test_strict_mode_record_failure(site, martlet):
    for name in ("fakedupa", "fakedupb"):
        dist, version, source, _ = ZOO[name]
        site.dist(
            dist,
            version,
            entry_points={name: f"fakeplug_{name}"},
            modules={f"fakeplug_{name}": source},
        )
    result = martlet("--help", site=site, env={"MARTLET_STRICT_PLUGINS": "yes"})
    assert result.rc == 1, result
    assert "failed to load" in result.err
    assert "registers tuner 'fake-shared'" in result.err
    relaxed = martlet("--help", site=site)
    assert relaxed.rc == 0 and len([w for w in relaxed.warnings if "fake-shared" in w]) == 2


def test_strict_mode_with_healthy_plugins(site, martlet):
    site.dist(
        "fake-good",
        "1.2.0",
        entry_points={"fakegood": "fakeplug_fakegood"},
        modules={"fakeplug_fakegood": GOOD, "fakeplug_good_cmd": GOOD_CMD},
    )
    result = martlet("fake-hello", site=site, env={"MARTLET_STRICT_PLUGINS": "1"})
    assert (result.rc, result.out, result.err) == (0, "hello world\n", ""), result


# ----------------------------------------------------------- plugins asked for by name


def test_requested_plugin_that_failed_is_a_hard_error(zoo, martlet):
    env = {"MARTLET_PLUGINS": "fakegood,fake-broken"}
    marker(zoo, clear=True)
    result = martlet("fake-hello", site=zoo, env=env)
    assert result.rc == 1, result
    assert result.err.splitlines()[:3] == [
        "Error: plugin 'fakebroken' (fake-broken 0.3) failed to load",
        "  why: import failed: ModuleNotFoundError: No module named 'fakeplug_shiny_kernels' "
        "(it is named in MARTLET_PLUGINS)",
        "  fix: fix or reinstall it, or remove it from MARTLET_PLUGINS",
    ]
    assert "Traceback" not in result.err
    assert not marker(zoo).exists()
    # the original exception comes with --debug
    debug = martlet("--debug", "fake-hello", site=zoo, env=env)
    assert debug.rc == 1
    assert "Traceback (most recent call last)" in debug.err
    assert "ModuleNotFoundError: No module named 'fakeplug_shiny_kernels'" in debug.err


def test_requested_plugin_that_failed_still_listed(zoo, martlet):
    env = {"MARTLET_PLUGINS": "fakegood,fake-broken"}
    result = martlet("plugins", "--json", site=zoo, env=env)
    assert result.rc == 0, result
    row = result.plugin("fakebroken")
    assert row["status"] == "failed"
    assert row["error"] == ZOO["fakebroken"][3]
    assert result.plugin("fakegood")["status"] == "ok"
    for name in FAILING[1:]:
        assert result.plugin(name)["status"] == "blocked"
        assert result.plugin(name)["error"] == "not listed in MARTLET_PLUGINS"
    assert result.warnings == []  # asked for: an error where it matters, never a warning
    for args in (["--help"], ["version"], ["plugins"], ["doctor", "--json"]):
        assert martlet(*args, site=zoo, env=env).rc == 0, args


def test_requested_failed_plugin_beats_unknown_command(zoo, martlet):
    # the command the user typed may be the one the failed plugin would have provided
    result = martlet("fake-train", site=zoo, env={"MARTLET_PLUGINS": "fakebroken"})
    assert result.rc == 1, result
    assert "Error: plugin 'fakebroken' (fake-broken 0.3) failed to load" in result.err
    assert "fakeplug_shiny_kernels" in result.err


# ------------------------------------------------------------------ allow / deny lists


def probe_site(site):
    """Three plugins whose entry modules leave a marker file when imported."""
    for name in ("fakealpha", "fakebeta", "fakegamma"):
        site.dist(
            f"fake-{name[4:]}",
            "1.0",
            entry_points={name: f"fakeplug_{name}"},
            modules={
                f"fakeplug_{name}": f"""
            import pathlib
            pathlib.Path(__file__).with_name("{name}.imported").touch()
            from martlet import hookimpl
            from martlet.records import TunerRecord
            MARTLET_API = 1
            @hookimpl
            def martlet_tuners():
                yield TunerRecord(name="{name}-tuner", impl="pkg.mod:T")
            """
            },
        )
    return site


def imported(site) -> set[str]:
    return {p.stem for p in site.root.glob("*.imported")}


def test_empty_allow_list_blocks_all_before_import(site, martlet):
    probe_site(site)
    result = martlet("plugins", "--json", site=site, env={"MARTLET_PLUGINS": ""})
    assert result.rc == 0, result
    for name in ("fakealpha", "fakebeta", "fakegamma"):
        row = result.plugin(name)
        assert (row["status"], row["error"], row["records"]) == (
            "blocked",
            "not listed in MARTLET_PLUGINS",
            {},
        )
    assert result.plugin("core")["status"] == "ok"
    assert imported(site) == set()
    assert result.warnings == []


def test_allow_list(site, martlet):
    probe_site(site)
    env = {"MARTLET_PLUGINS": "fakealpha, fake-gamma"}  # a plugin name and a distribution name
    result = martlet("plugins", "--json", site=site, env=env)
    assert result.rc == 0, result
    assert [result.plugin(n)["status"] for n in ("fakealpha", "fakebeta", "fakegamma")] == [
        "ok",
        "blocked",
        "ok",
    ]
    assert result.plugin("fakealpha")["records"] == {"tuners": ["fakealpha-tuner"]}
    assert imported(site) == {"fakealpha", "fakegamma"}


def test_deny_list(site, martlet):
    probe_site(site)
    env = {"MARTLET_DISABLE_PLUGINS": "fake-beta;FAKEGAMMA"}
    result = martlet("plugins", "--json", site=site, env=env)
    assert result.rc == 0, result
    assert result.plugin("fakealpha")["status"] == "ok"
    for name in ("fakebeta", "fakegamma"):
        assert result.plugin(name)["status"] == "blocked"
        assert result.plugin(name)["error"] == "listed in MARTLET_DISABLE_PLUGINS"
    assert imported(site) == {"fakealpha"}


def test_deny_list_silences_a_broken_plugin(zoo, martlet):
    env = {"MARTLET_DISABLE_PLUGINS": "fakebroken,fake-dup-b"}
    result = martlet("plugins", "--json", site=zoo, env=env)
    assert result.rc == 0, result
    assert result.plugin("fakebroken")["status"] == "blocked"
    assert not [w for w in result.warnings if "fakebroken" in w or "fake-shared" in w]
    # with one side of the conflict blocked, the other is whole again
    assert result.plugin("fakedupa")["status"] == "ok"
    assert result.plugin("fakedupa")["records"]["tuners"] == ["fake-shared"]


# --------------------------------------------------------------------- the script


def test_console_script(zoo, martlet):
    result = martlet("plugins", "--json", site=zoo, script=True)
    assert result.rc == 0, result
    assert result.plugin("fakegood")["status"] == "ok"
    result = martlet("fake-helo", site=zoo, script=True)
    assert result.rc == 2, result
    assert "did you mean 'fake-hello'?" in result.err
