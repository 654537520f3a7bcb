"""The plugin manager in-process: local plugins, allow/deny lists, isolation, strict mode."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import martlet
import pytest
from martlet import hookimpl
from martlet.config import specs
from martlet.errors import PluginError
from martlet.manager import PLUGIN_API, PluginManager, PluginWarning, get_manager, set_manager
from martlet.records import LossRecord, TunerRecord

LOCAL = """
    from martlet import hookimpl
    from martlet.records import TunerRecord

    @hookimpl
    def martlet_tuners():
        yield TunerRecord(name="local-tuner", impl="json:dumps", summary="from a module")
"""


def test_plugin_api_is_an_integer():
    assert isinstance(PLUGIN_API, int) and martlet.PLUGIN_API == PLUGIN_API


def test_builtin_plugin_only():
    manager = PluginManager(environ={}, discover=False)
    [core] = manager.plugins
    assert core.to_dict() == {
        "name": "core",
        "distribution": "martlet-core",
        "version": martlet.__version__,
        "module": "martlet.builtin",
        "source": "builtin",
        "status": "ok",
        "error": None,
        "records": {"commands": ["doctor", "plugins", "version"]},
    }
    assert PluginManager(environ={}, discover=False, builtins=False).plugins == []


# -------------------------------------------------------------------- register_plugin


def test_register_plugin_uses_the_process_wide_manager(fresh_manager, make_module):
    assert get_manager() is fresh_manager
    info = martlet.register_plugin(make_module("fakeplug_local", LOCAL))
    assert (info.name, info.source, info.distribution, info.status) == (
        "fakeplug_local",
        "local",
        "local",
        "ok",
    )
    assert info.records == {"tuners": ["local-tuner"]}
    assert info.label == "local plugin 'fakeplug_local' (fakeplug_local)"
    assert fresh_manager.registry.get("tuners", "local-tuner").origin == "local:fakeplug_local"
    assert [p.to_dict()["source"] for p in fresh_manager.plugins] == ["builtin", "local"]


def test_set_manager_restores():
    mine = PluginManager(environ={}, discover=False)
    previous = set_manager(mine)
    try:
        assert get_manager() is mine
    finally:
        assert set_manager(previous) is mine
    assert get_manager() is not mine


def test_register_an_object_with_hook_methods(fresh_manager):
    class Losses:
        @hookimpl
        def martlet_losses(self):
            return [LossRecord(name="obj-loss", impl="json:dumps")]

    info = fresh_manager.register(Losses(), name="losses-obj")
    assert info.records == {"losses": ["obj-loss"]}
    assert fresh_manager.registry.get("loss", "obj_loss").name == "obj-loss"


def test_register_same_name_twice(fresh_manager, make_module):
    fresh_manager.register(make_module("fakeplug_local", LOCAL))
    with pytest.raises(PluginError) as info:
        fresh_manager.register(make_module("fakeplug_local", LOCAL))
    assert "already used by local plugin 'fakeplug_local'" in (info.value.why or "")


@pytest.mark.parametrize(
    "source, message",
    [
        (
            """
            from martlet import hookimpl
            from martlet.records import TunerRecord
            @hookimpl
            def martlet_tuners():
                yield TunerRecord(name="bad name", impl="json:dumps")
            """,
            "martlet_tuners() raised: invalid tuner name 'bad name'",
        ),
        (
            """
            from martlet import hookimpl
            from martlet.records import LossRecord
            @hookimpl
            def martlet_tuners():
                yield LossRecord(name="oops", impl="json:dumps")
            """,
            "martlet_tuners() yielded LossRecord, not TunerRecord",
        ),
        (
            """
            from martlet import hookimpl
            @hookimpl
            def martlet_tuners():
                raise RuntimeError("boom")
            """,
            "martlet_tuners() raised RuntimeError: boom",
        ),
        (
            """
            from martlet import hookimpl
            @hookimpl
            def martlet_tuner():
                return []
            """,
            "invalid hook implementation",
        ),
        (
            """
            from martlet import hookimpl
            @hookimpl
            def martlet_configure(config, extra):
                pass
            """,
            "invalid hook implementation",
        ),
        ("MARTLET_API = 99\n", "built for plugin API 99"),
    ],
    ids=["bad-name", "wrong-type", "raises", "unknown-hook", "bad-signature", "api"],
)
def test_invalid_local_plugin_is_refused_and_left_out(fresh_manager, make_module, source, message):
    with pytest.raises(PluginError) as info:
        fresh_manager.register(make_module("fakeplug_bad", source), name="bad")
    err = info.value
    assert err.what == "local plugin 'bad' (fakeplug_bad) failed to load"
    assert message in (err.why or "")
    assert fresh_manager.plugin("bad") is None
    # the manager is still usable, and the refused plugin's hooks are gone
    fresh_manager.register(make_module("fakeplug_local", LOCAL))
    assert fresh_manager.registry.names("tuners") == ["local-tuner"]
    assert [p.name for p in fresh_manager.plugins] == ["core", "fakeplug_local"]


def test_hook_exception_is_the_cause(fresh_manager, make_module):
    source = """
        from martlet import hookimpl
        @hookimpl
        def martlet_losses():
            raise KeyError("missing")
    """
    with pytest.raises(PluginError) as info:
        fresh_manager.register(make_module("fakeplug_raises", source))
    assert isinstance(info.value.cause, PluginError)
    assert isinstance(info.value.cause.cause, KeyError)


def test_a_failed_plugin_contributes_no_records(site, discover):
    site.dist(
        "fake-half",
        entry_points={"half": "fakeplug_half"},
        modules={
            "fakeplug_half": """
        from martlet import hookimpl
        from martlet.records import LossRecord, TunerRecord
        MARTLET_API = 1
        @hookimpl
        def martlet_tuners():
            yield TunerRecord(name="fake-fine", impl="json:dumps")
        @hookimpl
        def martlet_losses():
            yield LossRecord(name="fake-bad", impl="not an import string")
    """
        },
    )
    manager, warned = discover({})
    info = manager.plugin("half")
    assert info.effective_status == "failed" and info.records == {}
    assert "is not an import string" in info.effective_error
    assert manager.registry.find("tuners", "fake-fine") is None
    assert [w for w in warned if w.startswith("plugin 'half' (fake-half 1.0) skipped: ")]


def test_same_name_twice_in_one_plugin(fresh_manager, make_module):
    source = """
        from martlet import hookimpl
        from martlet.records import TunerRecord
        @hookimpl
        def martlet_tuners():
            yield TunerRecord(name="twice", impl="json:dumps")
            yield TunerRecord(name="other", impl="json:dumps", aliases=("TWICE",))
    """
    with pytest.raises(PluginError, match="registers tuner 'twice' twice"):
        fresh_manager.register(make_module("fakeplug_twice", source))


def test_local_plugin_may_omit_martlet_api(fresh_manager, make_module):
    assert fresh_manager.register(make_module("fakeplug_local", LOCAL)).status == "ok"


def test_local_plugin_conflicting_with_builtin_command(fresh_manager, make_module):
    source = """
        from martlet import hookimpl
        from martlet.records import CommandRecord
        @hookimpl
        def martlet_commands():
            yield CommandRecord(name="Version", impl="json:dumps", summary="mine")
    """
    with pytest.raises(PluginError) as info:
        fresh_manager.register(make_module("fakeplug_cmd", source))
    assert "plugin 'core' (martlet-core" in (info.value.why or "")
    assert fresh_manager.registry.get("commands", "version").origin == "martlet-core"


def test_local_plugin_conflicting_with_installed(site, discover, make_module, tuner_plugin):
    site.dist(
        "fake-good",
        "1.2",
        entry_points={"good": "fakeplug_good"},
        modules={"fakeplug_good": tuner_plugin("fake-lora")},
    )
    manager, warned = discover({})
    source = """
        from martlet import hookimpl
        from martlet.records import TunerRecord
        @hookimpl
        def martlet_tuners():
            yield TunerRecord(name="FAKE_LORA", impl="json:dumps")
    """
    with pytest.raises(PluginError) as info:
        manager.register(make_module("fakeplug_clash", source))
    err = info.value
    assert "local plugin 'fakeplug_clash'" in err.what
    assert "registers tuner 'fake-lora', which plugin 'good' (fake-good 1.2) also registers" in (
        err.why or ""
    )
    # the installed plugin keeps working
    assert manager.plugin("good").effective_status == "ok"
    assert manager.registry.get("tuners", "fake-lora").origin == "fake-good"
    assert manager.plugin("fakeplug_clash") is None


# ------------------------------------------------------------------------ load_file


def test_load_file(fresh_manager, tmp_path: Path):
    path = tmp_path / "my_plugin.py"
    path.write_text(LOCAL.replace("\n    ", "\n"))
    info = fresh_manager.load_file(path)
    assert (info.name, info.source, info.module) == ("local:my_plugin", "local", str(path))
    assert info.to_dict()["records"] == {"tuners": ["local-tuner"]}


def test_load_file_missing(fresh_manager, tmp_path: Path):
    with pytest.raises(PluginError, match="not found"):
        fresh_manager.load_file(tmp_path / "nope.py")


def test_load_file_that_raises(fresh_manager, tmp_path: Path):
    path = tmp_path / "broken_plugin.py"
    path.write_text("import fakeplug_no_such_module\n")
    with pytest.raises(PluginError) as info:
        fresh_manager.load_file(path)
    assert "failed to import" in info.value.what
    assert "ModuleNotFoundError" in (info.value.why or "")
    assert isinstance(info.value.cause, ModuleNotFoundError)
    assert "martlet_local_broken_plugin" not in sys.modules


ONE_FILE = """
from __future__ import annotations

from dataclasses import dataclass

from martlet import hookimpl
from martlet.config import option
from martlet.records import LossRecord


@dataclass
class Options:
    beta: float = option(0.1, help="temperature")
    names: list[str] = option(default_factory=list)


def my_loss(logps):
    return -logps


@hookimpl
def martlet_losses():
    yield LossRecord(name="one-file-loss", impl=f"{__name__}:my_loss",
                     options=f"{__name__}:Options")
"""


def test_one_file_plugin_can_name_its_own_objects(fresh_manager, tmp_path: Path):
    path = tmp_path / "my-loss.py"  # not even a valid module name
    path.write_text(ONE_FILE)
    try:
        fresh_manager.load_file(path)
        record = fresh_manager.registry.get("losses", "one-file-loss")
        assert record.load()(3) == -3
        options = TunerRecord(name="x", impl=record.options).load()
        assert specs(options)["names"].is_list  # annotations resolve in the file's module
    finally:
        for name in [n for n in sys.modules if n.startswith("martlet_local_")]:
            del sys.modules[name]


# ------------------------------------------------------------------ allow / deny lists


def test_empty_allow_list_blocks_every_installed_plugin(site, discover, tuner_plugin):
    marker = site.root / "imported.marker"
    site.dist(
        "fake-good",
        entry_points={"good": "fakeplug_good"},
        modules={
            "fakeplug_good": f"import pathlib; pathlib.Path({str(marker)!r}).touch()\n"
            + tuner_plugin("fake-lora")
        },
    )
    manager, warned = discover({"MARTLET_PLUGINS": ""})
    info = manager.plugin("good")
    assert (info.status, info.error) == ("blocked", "not listed in MARTLET_PLUGINS")
    assert not marker.exists()
    assert manager.plugin("core").status == "ok"  # the core's own commands always work
    assert manager.registry.names("commands") == ["doctor", "plugins", "version"]
    assert all(p.status == "blocked" for p in manager.plugins if p.source == "entry-point")


@pytest.mark.parametrize(
    "allow", ["good", "fake-good", "FAKE_GOOD", " other ; good ", "x,fake-good,y"]
)
def test_allow_list_matches_plugin_or_distribution(site, discover, tuner_plugin, allow):
    site.dist(
        "fake-good",
        entry_points={"good": "fakeplug_good"},
        modules={"fakeplug_good": tuner_plugin("fake-lora")},
    )
    site.dist(
        "fake-other",
        entry_points={"otherp": "fakeplug_other"},
        modules={"fakeplug_other": tuner_plugin("fake-other")},
    )
    manager, _ = discover({"MARTLET_PLUGINS": allow})
    good = manager.plugin("good")
    assert good.status == "ok" and good.requested
    assert manager.plugin("otherp").status == "blocked"


def test_deny_list_blocks_before_import(site, discover, tuner_plugin):
    marker = site.root / "imported.marker"
    site.dist(
        "fake-good",
        entry_points={"good": "fakeplug_good"},
        modules={"fakeplug_good": tuner_plugin("fake-lora")},
    )
    site.dist(
        "fake-broken",
        "0.3",
        entry_points={"broken": "fakeplug_broken"},
        modules={
            "fakeplug_broken": f"import pathlib; pathlib.Path({str(marker)!r}).touch()\n"
            "raise ImportError('never')\n"
        },
    )
    manager, warned = discover({"MARTLET_DISABLE_PLUGINS": "fake-broken"})
    info = manager.plugin("broken")
    assert (info.status, info.error) == ("blocked", "listed in MARTLET_DISABLE_PLUGINS")
    assert not marker.exists()
    assert not [w for w in warned if "broken" in w]
    assert manager.plugin("good").status == "ok"


def test_deny_list_wins_over_allow_list(site, discover, tuner_plugin):
    site.dist(
        "fake-good",
        entry_points={"good": "fakeplug_good"},
        modules={"fakeplug_good": tuner_plugin("fake-lora")},
    )
    manager, _ = discover({"MARTLET_PLUGINS": "good", "MARTLET_DISABLE_PLUGINS": "good"})
    assert manager.plugin("good").status == "blocked"
    manager.check_requested()  # blocked is not failed


def test_requested_plugin_that_failed_raises_with_cause(site, discover):
    site.dist(
        "fake-broken",
        "0.3",
        entry_points={"broken": "fakeplug_broken"},
        modules={"fakeplug_broken": "raise ImportError('no module named shiny')\n"},
    )
    manager, warned = discover({"MARTLET_PLUGINS": "broken"})
    assert warned == []  # asked for by name: an error, not a warning
    with pytest.raises(PluginError) as info:
        manager.check_requested()
    err = info.value
    assert err.what == "plugin 'broken' (fake-broken 0.3) failed to load"
    assert "import failed: ImportError: no module named shiny" in (err.why or "")
    assert "MARTLET_PLUGINS" in (err.why or "")
    assert isinstance(err.cause, ImportError)


@pytest.mark.parametrize(
    "module, expected",
    [
        (
            "raise ImportError('no module named shiny')\n",
            "import failed: ImportError: no module named shiny",
        ),
        ("raise RuntimeError('bad init')\n", "import failed: RuntimeError: bad init"),
        ("def broken(:\n", "import failed: SyntaxError"),
        (
            "MARTLET_API = 99\n",
            "built for plugin API 99, but this martlet-core speaks API 1; upgrade or downgrade "
            "fake-bad to a release for API 1",
        ),
        ("x = 1\n", "declares no MARTLET_API; add `MARTLET_API = 1` to fakeplug_bad"),
    ],
    ids=["import-error", "runtime-error", "syntax-error", "api-99", "no-api"],
)
def test_installed_plugin_failures_are_isolated(site, discover, tuner_plugin, module, expected):
    site.dist(
        "fake-good",
        entry_points={"good": "fakeplug_good"},
        modules={"fakeplug_good": tuner_plugin("fake-lora")},
    )
    site.dist(
        "fake-bad", "0.2", entry_points={"bad": "fakeplug_bad"}, modules={"fakeplug_bad": module}
    )
    manager, warned = discover({})
    info = manager.plugin("bad")
    assert info.status == "failed"
    assert info.error.startswith(expected)
    assert [w for w in warned if w.startswith("plugin 'bad' (fake-bad 0.2) skipped: ")]
    assert manager.registry.get("tuners", "fake-lora").origin == "fake-good"


def test_two_distributions_with_one_plugin_name(site, discover, tuner_plugin):
    site.dist(
        "fake-first",
        entry_points={"same": "fakeplug_first"},
        modules={"fakeplug_first": tuner_plugin("fake-one")},
    )
    site.dist(
        "fake-second",
        entry_points={"same": "fakeplug_second"},
        modules={"fakeplug_second": tuner_plugin("fake-two")},
    )
    manager, warned = discover({})
    infos = [p for p in manager.plugins if p.name == "same"]
    assert sorted(p.status for p in infos) == ["failed", "ok"]
    failed = next(p for p in infos if p.status == "failed")
    assert "plugin name 'same' is already used by plugin 'same'" in failed.error
    assert any(failed.error in w for w in warned)


# ------------------------------------------------------------------------ strict mode


def test_strict_mode_raises_on_import_failure(site):
    site.dist(
        "fake-broken",
        "0.3",
        entry_points={"broken": "fakeplug_broken"},
        modules={"fakeplug_broken": "raise ImportError('no module named shiny')\n"},
    )
    with pytest.raises(PluginError) as info:
        PluginManager(environ={"MARTLET_STRICT_PLUGINS": "1"})
    err = info.value
    assert err.what == "plugin 'broken' (fake-broken 0.3) failed to load"
    assert "MARTLET_STRICT_PLUGINS=1" in (err.why or "")
    # it is not in MARTLET_PLUGINS, so the way out is to fix it or block it
    assert err.fix == "fix or reinstall it, or block it with MARTLET_DISABLE_PLUGINS=broken"
    assert isinstance(err.cause, ImportError)


def test_strict_mode_raises_on_bad_records_every_time(site, tuner_plugin):
    site.dist(
        "fake-dup-a",
        entry_points={"dupa": "fakeplug_dupa"},
        modules={"fakeplug_dupa": tuner_plugin("fake-same")},
    )
    site.dist(
        "fake-dup-b",
        entry_points={"dupb": "fakeplug_dupb"},
        modules={"fakeplug_dupb": tuner_plugin("fake-same")},
    )
    manager = PluginManager(environ={"MARTLET_STRICT_PLUGINS": "true"})
    for _ in range(2):
        with pytest.raises(PluginError, match="failed to load") as info:
            _ = manager.registry
        assert "registers tuner 'fake-same'" in (info.value.why or "")


def test_strict_mode_with_healthy_plugins(site, tuner_plugin):
    site.dist(
        "fake-good",
        entry_points={"good": "fakeplug_good"},
        modules={"fakeplug_good": tuner_plugin("fake-lora")},
    )
    manager = PluginManager(environ={"MARTLET_STRICT_PLUGINS": "1"})
    assert manager.registry.get("tuners", "fake-lora").name == "fake-lora"


# -------------------------------------------------------------------- lifecycle hooks


def test_lifecycle_hooks_reach_every_plugin(fresh_manager):
    calls = []

    class First:
        @hookimpl
        def martlet_configure(self, config):
            calls.append(("first", config))

        @hookimpl
        def martlet_model_loaded(self, model, config):
            calls.append(("first-model", model, config))

    class Second:
        @hookimpl
        def martlet_configure(self, config):
            calls.append(("second", config))

    fresh_manager.register(First(), name="first")
    fresh_manager.register(Second(), name="second")
    fresh_manager.configure("cfg")
    fresh_manager.model_loaded("model", "cfg")
    assert sorted(calls) == [("first", "cfg"), ("first-model", "model", "cfg"), ("second", "cfg")]


def test_each_failure_is_warned_once(site, tuner_plugin, make_module):
    site.dist(
        "fake-dup-a",
        entry_points={"dupa": "fakeplug_dupa"},
        modules={"fakeplug_dupa": tuner_plugin("fake-same")},
    )
    site.dist(
        "fake-dup-b",
        entry_points={"dupb": "fakeplug_dupb"},
        modules={"fakeplug_dupb": tuner_plugin("fake-same")},
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PluginWarning)  # as under python -W always
        manager = PluginManager(environ={})
        _ = manager.registry
        manager.register(make_module("fakeplug_local", LOCAL))  # rebuilds the registry
        manager.register(make_module("fakeplug_other", LOCAL.replace("local-tuner", "other")))
    mine = [str(w.message) for w in caught if "fake-same" in str(w.message)]
    assert len(mine) == 2, mine
    assert {m.split(" skipped:")[0] for m in mine} == {
        "plugin 'dupa' (fake-dup-a 1.0)",
        "plugin 'dupb' (fake-dup-b 1.0)",
    }


def test_registering_one_object_twice_keeps_the_first(fresh_manager, make_module):
    module = make_module("fakeplug_local", LOCAL)
    fresh_manager.register(module, name="first")
    with pytest.raises(PluginError, match="already registered"):
        fresh_manager.register(module, name="second")
    first = fresh_manager.plugin("first")
    assert first.status == "ok" and first.records == {"tuners": ["local-tuner"]}
    assert fresh_manager.registry.get("tuners", "local-tuner").name == "local-tuner"
    assert fresh_manager.plugin("second") is None


def test_an_unknown_name_in_the_allow_list_is_warned_not_ignored():
    with pytest.warns(PluginWarning, match="MARTLET_PLUGINS names 'no-such-plugin'"):
        manager = PluginManager(environ={"MARTLET_PLUGINS": "no-such-plugin"})
    assert all(i.status == "blocked" for i in manager.plugins if i.source == "entry-point")
