"""registry.get: aliases, spelling, helpful errors for unknown, missing and failed names."""

from __future__ import annotations

import pytest
from martlet import registry
from martlet.errors import PluginError, UnknownNameError
from martlet.manager import PluginManager
from martlet.providers import PROVIDERS, provider
from martlet.records import KINDS

TUNERS = """
    from martlet import hookimpl
    from martlet.records import LossRecord, TunerRecord

    @hookimpl
    def martlet_tuners():
        yield TunerRecord(name="my-tuner", impl="json:dumps", summary="mine",
                          aliases=("mt", "My_Alias"))
        yield TunerRecord(name="Other_Tuner", impl="json:loads", summary="other")

    @hookimpl
    def martlet_losses():
        return [LossRecord(name="my-loss", impl="json:dumps")]
"""


@pytest.fixture
def tuners(fresh_manager: PluginManager, make_module):
    fresh_manager.register(make_module("fakeplug_tuners", TUNERS))
    return fresh_manager.registry


@pytest.mark.parametrize(
    "name", ["my-tuner", "MY-TUNER", "my_tuner", " My_Tuner ", "mt", "MT", "my-alias", "MY_ALIAS"]
)
def test_get_by_name_alias_any_case_and_separator(tuners, name):
    assert tuners.get("tuners", name).name == "my-tuner"
    assert tuners.get("tuner", name).name == "my-tuner"


def test_registered_name_with_underscore_found_by_dash(tuners):
    assert tuners.get("tuners", "other-tuner").name == "Other_Tuner"


def test_names_records_and_find(tuners):
    assert tuners.names("tuners") == ["my-tuner", "Other_Tuner"]  # sorted, no aliases
    assert [r.name for r in tuners.records("losses")] == ["my-loss"]
    assert tuners.find("tuners", "mt").name == "my-tuner"
    assert tuners.find("tuners", "nope") is None
    assert tuners.names("quantizers") == []
    assert tuners.get("tuners", "mt").origin.startswith("local:")


def test_module_level_functions_use_the_process_wide_manager(tuners):
    assert registry.get("tuners", "mt").name == "my-tuner"
    assert registry.find("losses", "MY_LOSS").name == "my-loss"
    assert registry.names("tuners") == ["my-tuner", "Other_Tuner"]
    assert [r.name for r in registry.records("commands")] == ["doctor", "plugins", "version"]


def test_unknown_name_suggests_close_matches(tuners):
    with pytest.raises(UnknownNameError) as info:
        tuners.get("tuners", "my-tunr")
    err = info.value
    assert err.what == "unknown tuner 'my-tunr'"
    assert err.why == "did you mean 'my-tuner'?"
    assert err.fix == "choose one of: my-tuner, Other_Tuner"
    assert err.exit_code == 2


def test_close_match_on_an_alias_names_the_record(tuners):
    with pytest.raises(UnknownNameError) as info:
        tuners.get("tuners", "my-alais")
    assert info.value.why == "did you mean 'my-tuner'?"


def test_unknown_name_without_close_match(tuners):
    with pytest.raises(UnknownNameError) as info:
        tuners.get("tuners", "zzzzzz")
    assert info.value.why is None
    assert "choose one of" in (info.value.fix or "")


def test_unknown_name_in_an_empty_kind(tuners):
    with pytest.raises(UnknownNameError) as info:
        tuners.get("eval_tasks", "mmlu-zz")
    assert "no eval task is installed" in (info.value.fix or "")


def test_unknown_kind(tuners):
    with pytest.raises(UnknownNameError, match="unknown kind 'tunerz'"):
        tuners.get("tunerz", "lora")


@pytest.mark.parametrize(
    "kind, name, dist",
    [
        ("tuners", "lora", "martlet-peft"),
        ("tuners", "LoRA", "martlet-peft"),
        ("tuners", "prompt_tuning", "martlet-peft"),
        ("losses", "dpo", "martlet-align"),
        ("quantizers", "bnb", "martlet-bnb"),
        ("commands", "sft", "martlet-train"),
        ("inference_backends", "vllm", "martlet-vllm"),
    ],
)
def test_not_installed_provider_names_the_package(tuners, kind, name, dist):
    with pytest.raises(UnknownNameError) as info:
        tuners.get(kind, name)
    assert info.value.fix == f"it is provided by {dist}: pip install {dist}"


def test_providers_table_is_well_formed():
    for kind, names in PROVIDERS.items():
        assert kind in KINDS
        for name, dist in names.items():
            assert name == name.lower().replace("_", "-"), name
            assert dist.startswith("martlet-")
            assert provider(kind, name.upper()) == dist
    assert provider("tuners", "no-such-tuner") is None
    assert provider("no-such-kind", "lora") is None


def test_a_provider_in_use_without_the_name_says_it_is_installed(site, discover):
    site.dist(
        "martlet-dist",
        "0.1.0",
        entry_points={"dist": "fakeplug_dist"},
        modules={
            "fakeplug_dist": """
                from martlet import hookimpl
                from martlet.records import ParallelRecord

                MARTLET_API = 1

                @hookimpl
                def martlet_parallel_strategies():
                    yield ParallelRecord(name="ddp", impl="json:dumps")
            """
        },
    )
    manager, _ = discover({})
    with pytest.raises(UnknownNameError) as info:
        manager.registry.get("parallel_strategies", "fsdp")
    assert info.value.fix == (
        "martlet-dist 0.1.0 is installed but has no parallel strategy 'fsdp'; "
        "a newer version may: pip install -U martlet-dist"
    )


# ------------------------------------------------------- installed but failed / blocked


FAILING = """
    MARTLET_API = 1
    raise ImportError("aqlm kernels are not built for this platform")
"""


def test_failed_provider_is_a_plugin_error_with_the_cause(site, discover):
    site.dist(
        "martlet-aqlm",
        "0.1.0",
        entry_points={"aqlm": "fakeplug_aqlm"},
        modules={"fakeplug_aqlm": FAILING},
    )
    manager, warned = discover({})
    assert (
        "plugin 'aqlm' (martlet-aqlm 0.1.0) skipped: import failed: ImportError: "
        "aqlm kernels are not built for this platform"
    ) in warned
    with pytest.raises(PluginError) as info:
        manager.registry.get("quantizers", "aqlm")
    err = info.value
    assert "quantizer 'aqlm' is provided by plugin 'aqlm' (martlet-aqlm 0.1.0)" in err.what
    assert "failed" in err.what
    assert "aqlm kernels are not built" in (err.why or "")
    assert "pip install --force-reinstall martlet-aqlm" in (err.fix or "")
    assert isinstance(err.cause, ImportError)
    assert err.__cause__ is err.cause


def test_blocked_provider_says_how_to_unblock(site, discover):
    site.dist(
        "martlet-aqlm",
        "0.1.0",
        entry_points={"aqlm": "fakeplug_aqlm"},
        modules={"fakeplug_aqlm": FAILING},
    )
    manager, warned = discover({"MARTLET_DISABLE_PLUGINS": "martlet-aqlm"})
    assert not [w for w in warned if "aqlm" in w]
    with pytest.raises(PluginError) as info:
        manager.registry.get("quantizers", "aqlm")
    assert info.value.what == (
        "quantizer 'aqlm' is provided by plugin 'aqlm' (martlet-aqlm 0.1.0), "
        "which is installed but disabled by MARTLET_DISABLE_PLUGINS"
    )
    assert info.value.why == "MARTLET_DISABLE_PLUGINS=martlet-aqlm is set"
    assert info.value.fix == "enable it: unset MARTLET_DISABLE_PLUGINS"


@pytest.mark.parametrize(
    "environ, state, fix",
    [
        (
            # MARTLET_PLUGINS keeps the plugins installed in this environment out of the way
            {"MARTLET_PLUGINS": "loaders", "MARTLET_DISABLE_PLUGINS": "other,Fake_Loaders"},
            "disabled by MARTLET_DISABLE_PLUGINS",
            "enable it: set MARTLET_DISABLE_PLUGINS=other (without loaders)",
        ),
        (
            {"MARTLET_PLUGINS": "other"},
            "not listed in MARTLET_PLUGINS",
            "enable it: set MARTLET_PLUGINS=loaders,other, or unset MARTLET_PLUGINS",
        ),
    ],
)
def test_unknown_name_of_a_kind_a_disabled_plugin_provides_says_so(
    loaders_site, discover, environ, state, fix
):
    manager, _ = discover(environ)
    # a name the table does not list: the disabled plugin provides the kind, maybe the name
    with pytest.raises(UnknownNameError) as info:
        manager.registry.get("model_loaders", "some-loader")
    assert info.value.what == "unknown model loader 'some-loader'"
    assert info.value.why == (
        f"plugin 'loaders' (fake-loaders 0.2.0), which provides model loaders, is installed "
        f"but {state}"
    )
    assert info.value.fix == fix
    # a name the table lists: the disabled plugin provides it
    with pytest.raises(PluginError) as info:
        manager.registry.get("model_loaders", "FAKE_LOADER")
    assert "is provided by plugin 'loaders' (fake-loaders 0.2.0), which is installed but" in (
        info.value.what
    )
    assert info.value.fix == fix


# ------------------------------------------------------------------------ conflicts


def test_same_name_in_two_distributions(site, discover, tuner_plugin):
    site.dist(
        "fake-dup-a",
        "1.0",
        entry_points={"dupa": "fakeplug_dupa"},
        modules={"fakeplug_dupa": tuner_plugin("fake-same")},
    )
    site.dist(
        "fake-dup-b",
        "2.0",
        entry_points={"dupb": "fakeplug_dupb"},
        modules={"fakeplug_dupb": tuner_plugin("Fake_Same")},
    )
    manager, warned = discover({})
    a, b = manager.plugin("dupa"), manager.plugin("fake-dup-b")
    assert a.effective_status == b.effective_status == "failed"
    assert a.records == b.records == {}
    pairs = ((a, "plugin 'dupb' (fake-dup-b 2.0)"), (b, "plugin 'dupa' (fake-dup-a 1.0)"))
    for info, other in pairs:
        assert f"registers tuner 'fake-same', which {other} also registers" in info.record_error
        assert f"{info.label} skipped: {info.record_error}" in warned
    with pytest.raises(PluginError) as err:
        manager.registry.get("tuners", "FAKE-SAME")
    what = err.value.what
    assert "is registered by more than one plugin" in what
    assert "fake-dup-a 1.0" in what and "fake-dup-b 2.0" in what
    assert "MARTLET_DISABLE_PLUGINS" in (err.value.fix or "")


def test_alias_clashing_with_a_name_is_a_conflict(site, discover, tuner_plugin):
    site.dist(
        "fake-one",
        entry_points={"one": "fakeplug_one"},
        modules={"fakeplug_one": tuner_plugin("fake-alpha")},
    )
    site.dist(
        "fake-two",
        entry_points={"two": "fakeplug_two"},
        modules={"fakeplug_two": tuner_plugin("fake-beta", aliases=("fake_alpha",))},
    )
    manager, warned = discover({})
    assert manager.plugin("one").effective_status == "failed"
    assert manager.plugin("two").effective_status == "failed"
    with pytest.raises(PluginError, match="more than one plugin"):
        manager.registry.get("tuners", "fake-alpha")
    # the loser's other names go too: a plugin is wholly in use or not at all
    with pytest.raises(UnknownNameError):
        manager.registry.get("tuners", "fake-beta")


def test_blocking_one_side_resolves_the_conflict(site, discover, tuner_plugin):
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
    manager, warned = discover({"MARTLET_DISABLE_PLUGINS": "dupb"})
    assert not [w for w in warned if "fake-dup" in w]
    assert manager.registry.get("tuners", "fake-same").origin == "fake-dup-a"
