"""The Python API dispatches to the records plugins register: models, loaders, templates,
dataset sources; and what is registered from Python is usable by name in the process."""

from __future__ import annotations

import sys
import types

import martlet
import pytest
from martlet import hookimpl
from martlet.errors import MartletError, PluginError, RecordError, UnknownNameError
from martlet.records import (
    DatasetSourceRecord,
    ModelLoaderRecord,
    ModelRecord,
    TemplateRecord,
)

# A plugin whose implementations are real (if small) objects: a loader that "loads" a text
# file as (content, upper-cased content), a template that joins messages, and a source that
# reads lines of a file as rows.
SOURCE = """
from pathlib import Path

class TextLoader:
    def can_load(self, source):
        return source.endswith(".txt")
    def load(self, source, **options):
        text = Path(source).read_text()
        return text, {"options": options, "upper": text.upper()}
    def load_tokenizer(self, source, **options):
        return Path(source).read_text().split()

class AnyLoader:
    def can_load(self, source):
        return source.endswith(".txt") or source.endswith(".any")
    def load(self, source, **options):
        return "any", None
    def load_tokenizer(self, source, **options):
        return None

class JoinTemplate:
    def __init__(self, tokenizer, **options):
        self.tokenizer, self.options = tokenizer, options
    def render(self, messages, *, add_generation_prompt=False):
        return self.options.get("sep", "|").join(m["content"] for m in messages)
    def encode(self, messages):
        return {"input_ids": [len(m["content"]) for m in messages]}

class LinesSource:
    def can_read(self, spec, *, hub=None):
        return spec.endswith(".lines") and hub in (None, "huggingface")
    def read(self, spec, streaming=False, **options):
        rows = [{"text": line} for line in Path(spec).read_text().splitlines()]
        return iter(rows) if streaming else rows

def resolve(record):
    import os
    return os.environ.get("API_TEST_MODEL_PATH")
"""


@pytest.fixture
def api_plugin(fresh_manager, tmp_path):
    module = types.ModuleType("api_test_impls")
    exec(SOURCE, module.__dict__)
    sys.modules["api_test_impls"] = module

    class Hooks:
        @hookimpl
        def martlet_model_loaders(self):
            yield ModelLoaderRecord(name="text", impl="api_test_impls:TextLoader", summary="t")

        @hookimpl
        def martlet_templates(self):
            yield TemplateRecord(name="auto", impl="api_test_impls:JoinTemplate", summary="j")
            yield TemplateRecord(name="semi", impl="api_test_impls:JoinTemplate", summary="j")

        @hookimpl
        def martlet_dataset_sources(self):
            yield DatasetSourceRecord(name="lines", impl="api_test_impls:LinesSource", summary="l")

        @hookimpl
        def martlet_models(self):
            yield ModelRecord(
                name="resolved-model",
                family="test",
                impl="api_test_impls:resolve",
                hub_ids={"huggingface": "org/resolved-model"},
                summary="r",
            )

    fresh_manager.register(Hooks(), name="api-test")
    yield fresh_manager
    sys.modules.pop("api_test_impls", None)


def test_load_model_picks_the_one_loader_that_claims_the_source(api_plugin, tmp_path):
    path = tmp_path / "model.txt"
    path.write_text("hello world")
    seen = []

    class Observer:
        @hookimpl
        def martlet_model_loaded(self, model, config):
            seen.append((model, dict(config)))

    api_plugin.register(Observer(), name="observer")
    model, tok = martlet.load_model(str(path), torch_dtype="float32")
    assert model == "hello world"
    assert tok == {"options": {"torch_dtype": "float32"}, "upper": "HELLO WORLD"}
    assert seen == [("hello world", {"torch_dtype": "float32"})]
    assert martlet.load_tokenizer(str(path)) == ["hello", "world"]


def test_loader_auto_is_the_default_choice_not_a_loader_name(api_plugin, tmp_path):
    """``--model-loader auto`` (the option's default) reaches backends as the string "auto";
    found broken: the vllm backend asked the registry for a loader named 'auto' (CI failed with
    "unknown model loader 'auto'" whenever the embedded model was not yet dequantized)."""
    path = tmp_path / "model.txt"
    path.write_text("hello world")
    assert martlet.load_model(str(path), loader="auto")[0] == "hello world"
    assert martlet.api.model_loader(str(path), None, "auto").load(str(path))[0] == "hello world"


def test_no_loader_for_a_source_is_a_clear_error(api_plugin):
    with pytest.raises(UnknownNameError, match="no model loader can read 'weights.bin'") as err:
        martlet.load_model("weights.bin")
    assert "text" in err.value.why


def test_no_loader_because_its_plugin_is_disabled_says_how_to_enable_it(
    loaders_site, discover, monkeypatch
):
    # as `MARTLET_DISABLE_PLUGINS=hf martlet sft --model M`; MARTLET_PLUGINS keeps the plugins
    # installed in this environment out of the way
    manager, _ = discover({"MARTLET_PLUGINS": "loaders", "MARTLET_DISABLE_PLUGINS": "loaders"})
    monkeypatch.setattr("martlet.manager._manager", manager)
    with pytest.raises(UnknownNameError) as err:
        martlet.load_model("M")
    assert err.value.what == "no model loader can read 'M'"
    assert err.value.why == (
        "plugin 'loaders' (fake-loaders 0.2.0), which provides model loaders, is installed but "
        "disabled by MARTLET_DISABLE_PLUGINS"
    )
    assert err.value.fix.startswith("enable it: unset MARTLET_DISABLE_PLUGINS; or ")


def test_two_loaders_claiming_a_source_is_an_error_not_a_choice_by_order(api_plugin, tmp_path):
    module = sys.modules["api_test_impls"]
    assert module.AnyLoader

    class More:
        @hookimpl
        def martlet_model_loaders(self):
            yield ModelLoaderRecord(name="any", impl="api_test_impls:AnyLoader", summary="a")

    api_plugin.register(More(), name="more")
    path = tmp_path / "m.txt"
    path.write_text("x")
    with pytest.raises(MartletError, match="could be read by several model loaders: any, text"):
        martlet.load_model(str(path))
    assert martlet.load_model(str(path), loader="text")[0] == "x"
    assert martlet.load_model("m.any")[0] == "any"  # only one claims .any


def test_resolve_model_tries_resolver_then_path_then_hub(api_plugin, monkeypatch, tmp_path):
    monkeypatch.delenv("API_TEST_MODEL_PATH", raising=False)
    assert martlet.resolve_model("resolved-model")[0] == "org/resolved-model"
    monkeypatch.setenv("API_TEST_MODEL_PATH", str(tmp_path))
    source, record = martlet.resolve_model("RESOLVED_MODEL")
    assert source == str(tmp_path) and record.name == "resolved-model"
    assert martlet.resolve_model("not/registered") == ("not/registered", None)


def test_register_model_is_usable_by_name(api_plugin, tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("mine")
    record = martlet.register_model("my-model", path=str(path), aliases=("mm",))
    assert record.origin.startswith("local:python:my-model")
    assert martlet.load_model("mm")[0] == "mine"
    names = [p.name for p in api_plugin.plugins]
    assert any(n.startswith("python:my-model") for n in names)
    with pytest.raises(PluginError, match="also registers"):
        martlet.register_model("my-model", path=str(path))
    with pytest.raises(RecordError):
        martlet.register_model("bad name!", path=str(path))


def test_register_dataset_and_load_dataset(api_plugin, tmp_path):
    data = tmp_path / "rows.lines"
    data.write_text("a\nb\n")
    assert martlet.load_dataset(str(data)) == [{"text": "a"}, {"text": "b"}]
    assert list(martlet.load_dataset(str(data), streaming=True)) == [{"text": "a"}, {"text": "b"}]
    with pytest.raises(UnknownNameError, match="no dataset source can read"):
        martlet.load_dataset(str(data), hub="modelscope")
    rows = martlet.load_dataset(str(data), source="lines", hub="x")
    assert rows == [{"text": "a"}, {"text": "b"}]
    record = martlet.register_dataset("my-rows", path=str(data), format="text")
    assert api_plugin.registry.get("datasets", "my_rows") == record
    with pytest.raises(RecordError, match="says nowhere to find its data"):
        martlet.register_dataset("empty")


def test_load_template_defaults_to_auto_and_passes_options(api_plugin):
    messages = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    assert martlet.load_template(tokenizer=None).render(messages) == "a|b"
    assert martlet.load_template(None, "semi", sep=";").render(messages) == "a;b"
    with pytest.raises(UnknownNameError, match="unknown template 'nope'"):
        martlet.load_template(None, "nope")


def test_api_names_are_lazy_attributes():
    import subprocess

    code = (
        "import sys, martlet; assert 'martlet.api' not in sys.modules; "
        "f = martlet.load_model; assert 'martlet.api' in sys.modules; "
        "print(f.__module__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "martlet.api"
    with pytest.raises(AttributeError):
        martlet.no_such_function  # noqa: B018


def test_a_run_whose_config_names_no_tuner_says_so(tmp_path):
    """The core does not guess a tuner (it used to fall back to lora): a run directory's
    config.yaml that names none is an error saying what to add."""
    from martlet.errors import MartletError
    from martlet.runs import read_run

    (tmp_path / "config.yaml").write_text("model: some/model\n")
    run = read_run(tmp_path)
    with pytest.raises(MartletError, match="names no tuner") as info:
        _ = run.tuner
    assert "add `tuner: NAME`" in str(info.value)
