"""Records: validation when built, and lazy loading of the implementation."""

from __future__ import annotations

import dataclasses
import json
import os.path
from pathlib import Path

import pytest
from martlet import hookspecs
from martlet.errors import MissingDependencyError, PluginError, RecordError, UnknownNameError
from martlet.records import (
    KINDS,
    RECORD_TYPES,
    AcceleratorRecord,
    CommandRecord,
    DatasetRecord,
    LossRecord,
    ModelRecord,
    QuantizerRecord,
    TunerRecord,
    check_kind,
    hook_name,
    normalize,
)

#: the least each record type needs to be valid
MINIMAL = {
    "models": {"family": "fam"},
    "datasets": {"path": "pkg:data/x.jsonl"},
    "commands": {"impl": "pkg.cmd:main", "summary": "Do a thing."},
}


def minimal(cls, **overrides):
    kwargs = {"name": "thing", "impl": "pkg.mod:Thing", **MINIMAL.get(cls.kind, {})}
    kwargs.update(overrides)
    return cls(**kwargs)


# ----------------------------------------------------------------------------- kinds


def test_every_kind_has_a_registration_hook():
    assert len(RECORD_TYPES) == 16
    for kind, cls in KINDS.items():
        assert cls.kind == kind
        assert callable(getattr(hookspecs, hook_name(kind)))
    spec_names = {n for n in dir(hookspecs) if n.startswith("martlet_")}
    lifecycle = {"martlet_configure", "martlet_model_loaded"}
    assert spec_names - lifecycle == {hook_name(k) for k in KINDS}
    assert lifecycle <= spec_names


@pytest.mark.parametrize("cls", RECORD_TYPES, ids=lambda c: c.kind)
def test_minimal_record_of_every_kind_validates(cls):
    rec = minimal(cls)
    assert rec.name == "thing"
    assert rec.names == ("thing",)
    json.dumps(rec.to_dict())  # JSON-ready
    assert rec.to_dict()["kind"] == cls.kind
    with pytest.raises(dataclasses.FrozenInstanceError):
        rec.name = "other"  # type: ignore[misc]
    hash(rec)


@pytest.mark.parametrize(
    "spelling, kind",
    [
        ("tuners", "tuners"),
        ("tuner", "tuners"),
        ("Tuners", "tuners"),
        ("model-loaders", "model_loaders"),
        ("model_loader", "model_loaders"),
        ("inference backend", "inference_backends"),
        ("parallel-strategy", "parallel_strategies"),
    ],
)
def test_check_kind_accepts_singular_plural_and_separators(spelling, kind):
    assert check_kind(spelling).kind == kind


def test_check_kind_unknown_suggests_and_lists_kinds():
    with pytest.raises(UnknownNameError) as info:
        check_kind("tunerz")
    err = info.value
    assert "unknown kind 'tunerz'" in err.what
    assert "did you mean tuners" in (err.why or "")
    assert "model_loaders" in (err.fix or "")


def test_normalize_ignores_case_and_separators():
    assert normalize("  Prompt_Tuning ") == normalize("prompt-tuning") == "prompt-tuning"


# ------------------------------------------------------------------------ validation


@pytest.mark.parametrize("name", ["", " lora", "bad name", "-lead", "a/b", "lö", "a:b"])
def test_bad_names_are_rejected(name):
    with pytest.raises(RecordError, match="invalid tuner name"):
        TunerRecord(name=name, impl="pkg.mod:X")


def test_non_string_name_is_rejected():
    with pytest.raises(RecordError):
        TunerRecord(name=3, impl="pkg.mod:X")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["lora", "LoRA+", "qwen2.5-7b", "a_b", "7b"])
def test_good_names(name):
    assert TunerRecord(name=name, impl="pkg.mod:X").name == name


def test_bad_alias_is_rejected():
    with pytest.raises(RecordError, match="invalid alias 'no good'"):
        TunerRecord(name="lora", impl="pkg.mod:X", aliases=("no good",))


@pytest.mark.parametrize(
    "impl",
    [
        "",
        "pkg.mod",
        "pkg.mod:",
        ":X",
        "pkg.mod:X:Y",
        "1pkg:X",
        "pkg-x.mod:X",
        "pkg..mod:X",
        "pkg.mod:X.",
        "pkg mod:X",
    ],
)
def test_unparsable_impl_strings_are_rejected(impl):
    with pytest.raises(RecordError, match="is not an import string") as info:
        TunerRecord(name="lora", impl=impl)
    assert "package.module:attribute" in (info.value.why or "")


def test_non_string_impl_is_rejected():
    with pytest.raises(RecordError, match="is not an import string"):
        TunerRecord(name="lora", impl=object())  # type: ignore[arg-type]


@pytest.mark.parametrize("impl", ["pkg:X", "pkg.mod:X", "pkg.mod:Outer.Inner", "_p.m2:f_1"])
def test_import_strings_that_parse(impl):
    assert TunerRecord(name="lora", impl=impl).impl == impl


def test_bad_options_import_string_is_rejected():
    with pytest.raises(RecordError, match="options 'nocolon' is not an import string"):
        TunerRecord(name="lora", impl="pkg.mod:X", options="nocolon")


@pytest.mark.parametrize("req", ["torch >>= 2", "not a requirement!", "peft>=", "==1.0"])
def test_bad_requirement_strings_are_rejected(req):
    with pytest.raises(RecordError, match="bad requirement") as info:
        TunerRecord(name="lora", impl="pkg.mod:X", requires=(req,))
    assert repr(req) in info.value.what


def test_good_requirement_strings():
    rec = TunerRecord(
        name="lora",
        impl="pkg.mod:X",
        requires=("peft>=0.10,<1", "torch", "bitsandbytes; sys_platform == 'linux'"),
    )
    assert len(rec.requires) == 3


def test_string_fields_become_tuples_and_frozensets():
    rec = TunerRecord(
        name="lora", impl="pkg.mod:X", aliases="lo", requires="peft", capabilities="merge"
    )
    assert rec.aliases == ("lo",)
    assert rec.requires == ("peft",)
    assert rec.capabilities == frozenset({"merge"})
    rec = TunerRecord(name="lora", impl="pkg.mod:X", aliases=["a", "b"], capabilities=["x", "x"])
    assert rec.aliases == ("a", "b")
    assert rec.capabilities == frozenset({"x"})
    assert rec.names == ("lora", "a", "b")


def test_non_string_items_in_lists_are_rejected():
    with pytest.raises(RecordError, match="must hold strings"):
        TunerRecord(name="lora", impl="pkg.mod:X", aliases=("ok", 3))
    with pytest.raises(RecordError, match="must be a list of strings"):
        TunerRecord(name="lora", impl="pkg.mod:X", requires=5)


def test_summary_must_be_text():
    with pytest.raises(RecordError, match="summary must be a string"):
        TunerRecord(name="lora", impl="pkg.mod:X", summary=["no"])  # type: ignore[arg-type]


def test_command_needs_a_summary():
    with pytest.raises(RecordError, match="needs a summary"):
        CommandRecord(name="sft", impl="pkg.cli:sft")
    assert CommandRecord(name="sft", impl="pkg.cli:sft", summary="Train.").summary == "Train."


def test_command_needs_an_impl():
    with pytest.raises(RecordError, match="is not an import string"):
        CommandRecord(name="sft", summary="Train.")


def test_quantizer_stages_and_bits():
    rec = QuantizerRecord(name="q", impl="pkg.mod:Q", stages=("load", "export"), bits=4)
    assert rec.stages == ("load", "export")
    assert rec.bits == (4,)
    assert QuantizerRecord(name="q", impl="pkg.mod:Q").stages == ("load",)
    assert QuantizerRecord(name="q", impl="pkg.mod:Q", stages="export").stages == ("export",)
    with pytest.raises(RecordError, match="unknown stages") as info:
        QuantizerRecord(name="q", impl="pkg.mod:Q", stages=("load", "train"))
    assert "'train'" in info.value.what
    assert "export" in (info.value.why or "")
    for bits in ((4, 0), (-8,), ("4",)):
        with pytest.raises(RecordError, match="bits must be positive integers"):
            QuantizerRecord(name="q", impl="pkg.mod:Q", bits=bits)


def test_model_record_needs_family_and_impl_is_optional():
    rec = ModelRecord(name="tiny", family="llama", hub_ids={"huggingface": "org/tiny"})
    assert rec.impl == ""
    assert rec.hub_ids == {"huggingface": "org/tiny"}
    with pytest.raises(RecordError, match="has no family"):
        ModelRecord(name="tiny")
    with pytest.raises(RecordError, match="hub_ids must be a mapping"):
        ModelRecord(name="tiny", family="llama", hub_ids=["org/tiny"])
    with pytest.raises(RecordError, match="is not an import string"):
        ModelRecord(name="tiny", family="llama", impl="not an import")


def test_dataset_record_needs_a_place_to_find_data():
    with pytest.raises(RecordError, match="says nowhere to find its data"):
        DatasetRecord(name="alpaca")
    assert DatasetRecord(name="alpaca", hub_ids={"huggingface": "x/alpaca"}).splits == ("train",)
    assert DatasetRecord(name="alpaca", impl="pkg.mod:load").path == ""


def test_accelerator_device_type_defaults_to_name():
    assert AcceleratorRecord(name="cuda", impl="pkg.mod:Cuda").device_type == "cuda"
    rec = AcceleratorRecord(name="ascend", impl="pkg.mod:Npu", device_type="npu")
    assert rec.device_type == "npu"


def test_loss_record_fields():
    rec = LossRecord(name="dpo", impl="pkg.mod:dpo", data="preference", reference=True)
    assert rec.to_dict()["reference"] is True


# ----------------------------------------------------------------------------- load


def test_load_resolves_module_and_attribute_path():
    assert TunerRecord(name="j", impl="json:dumps").load() is json.dumps
    assert TunerRecord(name="j", impl="os.path:join").load() is os.path.join
    assert TunerRecord(name="j", impl="json:JSONDecoder.decode").load() is json.JSONDecoder.decode


def test_load_imports_only_on_use(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    marker = tmp_path / "imported"
    (tmp_path / "fakeplug_lazy_impl.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).touch()\nclass Impl:\n    x = 1\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(__import__("sys").modules, "fakeplug_lazy_impl", raising=False)
    rec = TunerRecord(name="lazy", impl="fakeplug_lazy_impl:Impl")
    rec.to_dict()
    assert not marker.exists()
    assert rec.load().x == 1
    assert marker.exists()


def test_load_of_missing_module_is_a_plugin_error_with_cause():
    rec = TunerRecord(name="gone", impl="fakeplug_no_such_module:X", origin="fake-dist")
    with pytest.raises(PluginError) as info:
        rec.load()
    err = info.value
    assert "cannot load" in err.what and "'gone'" in err.what
    assert "fakeplug_no_such_module" in (err.why or "")
    assert "fake-dist" in (err.fix or "")
    assert isinstance(err.cause, ModuleNotFoundError)


def test_load_of_missing_attribute_is_a_plugin_error_with_cause():
    with pytest.raises(PluginError) as info:
        TunerRecord(name="gone", impl="json:no_such_thing").load()
    assert isinstance(info.value.cause, AttributeError)
    assert "no_such_thing" in (info.value.why or "")


def test_load_without_impl_is_an_error():
    with pytest.raises(PluginError, match="names no implementation"):
        ModelRecord(name="tiny", family="llama").load()


def test_missing_requirement_is_reported_before_any_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    marker = tmp_path / "imported"
    (tmp_path / "fakeplug_needs_dep.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).touch()\nX = 1\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    rec = TunerRecord(
        name="needy",
        impl="fakeplug_needs_dep:X",
        requires=("fakeplug-not-installed-pkg>=1.2", "pluggy"),
        origin="martlet-needy",
    )
    assert rec.missing_requirements() == ["fakeplug-not-installed-pkg>=1.2"]
    with pytest.raises(MissingDependencyError) as info:
        rec.load()
    err = info.value
    assert "fakeplug-not-installed-pkg>=1.2" in err.what
    assert "martlet-needy" in (err.why or "")
    assert err.fix == "pip install 'fakeplug-not-installed-pkg>=1.2'"
    assert not marker.exists()


def test_too_old_requirement_is_missing():
    rec = TunerRecord(name="new", impl="json:dumps", requires=("pluggy>=999",))
    assert rec.missing_requirements() == ["pluggy>=999"]
    with pytest.raises(MissingDependencyError, match="pip install 'pluggy>=999'"):
        rec.load()


def test_met_requirements_and_markers_load():
    rec = TunerRecord(
        name="ok",
        impl="json:dumps",
        requires=("pluggy>=1", "fakeplug-not-installed-pkg; python_version < '3'"),
    )
    assert rec.missing_requirements() == []
    assert rec.load() is json.dumps
