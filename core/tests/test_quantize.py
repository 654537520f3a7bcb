"""--quant-method: a quantizer is checked before anything loads (installed, the stage, the
width, CUDA), wraps the model load (its config to the loader, then its own pass), finds the
checkpoints quantized elsewhere, and a run trained on a quantized base loads on it again."""

from __future__ import annotations

import sys
import types

import martlet
import pytest
from martlet import hookimpl
from martlet.config import build
from martlet.errors import ConfigError, MartletError, RecordError, UnknownNameError
from martlet.options import ModelOptions, QuantizeOptions
from martlet.quantize import chosen, prequantized, weight_bytes
from martlet.records import ModelLoaderRecord, QuantizerRecord
from martlet.runs import Run

SOURCE = """
from dataclasses import dataclass
from pathlib import Path
from martlet.config import option

@dataclass(kw_only=True)
class HalfOptions:
    half_scale: float = option(0.5, help="What the weights are multiplied by.")

class Halver:
    calls = []
    def quantize_on_load(self, bits, **options):
        Halver.calls.append(("on_load", bits, options))
        return {"bits": bits}
    def quantize_loaded(self, model, bits, half_scale=0.5, **options):
        Halver.calls.append(("loaded", bits, half_scale))
        return {"model": model, "scaled": half_scale}

class Exporter:
    def export(self, model, tokenizer, output_dir, bits, **options):
        pass

class Reader:
    def prepare_prequantized(self, model):
        return {"prepared": model}

class Loader:
    def can_load(self, source):
        return source.endswith(".txt")
    def load(self, source, **options):
        model = {"source": source, "options": options}
        if "pre" in source:
            model = types_model(source)
        return model, "tokenizer"
    def load_tokenizer(self, source, **options):
        return "tokenizer"

class _Config:
    quantization_config = {"quant_method": "readable"}

class _Model:
    config = _Config()

def types_model(source):
    return _Model()
"""


@pytest.fixture
def quant_plugin(fresh_manager):
    module = types.ModuleType("quant_test_impls")
    sys.modules["quant_test_impls"] = module  # before exec: its dataclass looks itself up
    exec(SOURCE, module.__dict__)

    class Hooks:
        @hookimpl
        def martlet_quantizers(self):
            yield QuantizerRecord(
                name="halve",
                impl="quant_test_impls:Halver",
                bits=(4, 8),
                options="quant_test_impls:HalfOptions",
                summary="h",
            )
            yield QuantizerRecord(
                name="exportonly", impl="quant_test_impls:Exporter", stages=("export",), bits=4
            )
            yield QuantizerRecord(
                name="gpuonly", impl="quant_test_impls:Halver", bits=(8,), needs_cuda=True
            )
            yield QuantizerRecord(
                name="reader",
                impl="quant_test_impls:Reader",
                aliases=("readable",),
                stages=("prequantized",),
            )

        @hookimpl
        def martlet_model_loaders(self):
            yield ModelLoaderRecord(name="text", impl="quant_test_impls:Loader", summary="t")

    fresh_manager.register(Hooks(), name="quant-test")
    yield module
    sys.modules.pop("quant_test_impls", None)


def test_a_quantizer_is_checked_before_anything_loads(quant_plugin):
    assert chosen("halve", 4, stage="load").bits == 4
    with pytest.raises(ConfigError, match="halve cannot quantize to 3 bits") as info:
        chosen("halve", 3, stage="load")
    assert "pass --quant-bits 4 (or 8)" in info.value.fix
    with pytest.raises(ConfigError, match="needs --quant-bits"):
        chosen("halve", None, stage="load")
    assert chosen("exportonly", None, stage="export").bits == 4  # its only width
    with pytest.raises(ConfigError, match="does not work at load time") as info:
        chosen("exportonly", 4, stage="load")
    assert "halve" in info.value.fix
    with pytest.raises(MartletError, match="needs a CUDA GPU") as info:
        chosen("gpuonly", 8, stage="load", cuda=False)
    assert "halve" in info.value.fix  # what runs here instead
    assert chosen("gpuonly", 8, stage="load", cuda=True).name == "gpuonly"
    with pytest.raises(UnknownNameError):
        chosen("halv", 4, stage="load")


def test_bnb_not_installed_names_the_package(fresh_manager):
    with pytest.raises(UnknownNameError, match="martlet-bnb"):
        chosen("bnb", 4, stage="load")


def test_load_model_passes_the_config_then_the_quantizers_own_pass(quant_plugin, tmp_path):
    file = tmp_path / "m.txt"
    file.write_text("x")
    quant_plugin.Halver.calls.clear()
    model, _ = martlet.load_model(
        str(file), quant_method="halve", quant_bits=8, quant_options={"half_scale": 0.25}
    )
    assert model["model"]["options"]["quantization_config"] == {"bits": 8}
    assert model["scaled"] == 0.25
    assert quant_plugin.Halver.calls == [("on_load", 8, {"half_scale": 0.25}), ("loaded", 8, 0.25)]


def test_a_checkpoint_quantized_elsewhere_goes_to_the_record_named_like_its_method(
    quant_plugin, tmp_path
):
    file = tmp_path / "pre.txt"
    file.write_text("x")
    model, _ = martlet.load_model(str(file))
    assert "prepared" in model  # quant_method "readable" is the reader's alias
    assert prequantized({"quant_method": "unknown"}) is None
    assert prequantized(None) is None


def test_quantizing_a_checkpoint_quantized_already_is_refused(quant_plugin, tmp_path):
    """Found broken: `--quant-method hqq` on an AQLM folder loaded it without its own loader
    and ran a broken model without a word."""
    (tmp_path / "config.json").write_text('{"quantization_config": {"quant_method": "aqlm"}}')
    with pytest.raises(ConfigError, match="is quantized with aqlm already") as info:
        martlet.load_model(str(tmp_path), quant_method="halve", quant_bits=8)
    assert "leave out --quant-method" in info.value.fix


def test_the_quantizers_options_are_flags_of_the_command(quant_plugin):
    @__import__("dataclasses").dataclass(kw_only=True)
    class Command(ModelOptions, QuantizeOptions):
        pass

    config = build(
        Command, values={"model": "m", "quant_method": "halve", "quant_bits": 4, "half_scale": 2.0}
    )
    assert config.quant_options() == {
        "quant_method": "halve",
        "quant_bits": 4,
        "quant_options": {"half_scale": 2.0},
    }
    with pytest.raises(ConfigError, match="pass --quant-method halve"):
        build(Command, values={"model": "m", "half_scale": 2.0})  # no --quant-method halve
    # ms-swift's spellings: --quantization_bit alone is bitsandbytes
    alone = build(Command, values={"model": "m", "quantization_bit": 4})
    assert (alone.quant_method, alone.quant_bits) == ("bnb", 4)
    assert build(Command, values={"model": "m"}).quant_options() == {}


def test_a_run_remembers_its_quantization(tmp_path):
    run = Run(tmp_path, {"model": "m", "quant_method": "halve", "quant_bits": 4})
    assert run.quantization() == {"quant_method": "halve", "quant_bits": 4, "quant_options": {}}
    section = Run(tmp_path, {"model": "m", "quant_method": {"name": "halve", "half_scale": 1.0}})
    assert section.quantization()["quant_options"] == {"half_scale": 1.0}
    assert Run(tmp_path, {"model": "m"}).quantization() == {}


def test_bad_records_are_refused():
    with pytest.raises(RecordError, match="unknown stages"):
        QuantizerRecord(name="x", impl="a:b", stages=("train",))
    with pytest.raises(RecordError, match="positive integers"):
        QuantizerRecord(name="x", impl="a:b", bits=(0,))


def test_weight_bytes_counts_what_the_tensors_hold():
    import torch

    model = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.Linear(4, 2, bias=False))
    assert weight_bytes(model) == (8 * 4 + 4 + 4 * 2) * 4
    model.half()
    assert weight_bytes(model) == (8 * 4 + 4 + 4 * 2) * 2
