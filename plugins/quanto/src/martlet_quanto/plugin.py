"""Registers the `quanto` quantizer and the `quanto` model loader (no torch or quanto import
here)."""

from martlet import hookimpl
from martlet.records import ModelLoaderRecord, QuantizerRecord

MARTLET_API = 1

_REQUIRES = ("optimum-quanto>=0.2.7", "transformers>=4.56", "accelerate", "safetensors")


@hookimpl
def martlet_quantizers():
    yield QuantizerRecord(
        name="quanto",
        impl="martlet_quanto.quantizer:QuantoQuantizer",
        aliases=("optimum-quanto",),
        bits=(2, 4, 8),
        stages=("load", "export"),
        requires=_REQUIRES,
        capabilities={"cpu", "cuda", "train"},
        summary="optimum-quanto int2/int4/int8 weights, at load time (QLoRA, CPU or GPU) and "
        "at export (reload with --model-loader quanto).",
    )


@hookimpl
def martlet_model_loaders():
    yield ModelLoaderRecord(
        name="quanto",
        impl="martlet_quanto.quantizer:QuantoLoader",
        sources=("quanto-dir",),
        requires=_REQUIRES,
        summary="Folders optimum-quanto saved (quanto_qmap.json beside the weights), e.g. by "
        "`martlet export --quant-method quanto`.",
    )
