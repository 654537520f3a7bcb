"""Registers the `hqq` quantizer and the `hqq` model loader (no torch or hqq import here)."""

from martlet import hookimpl
from martlet.records import ModelLoaderRecord, QuantizerRecord

MARTLET_API = 1

_REQUIRES = ("hqq>=0.2.8.post1", "transformers>=4.56", "safetensors")


@hookimpl
def martlet_quantizers():
    yield QuantizerRecord(
        name="hqq",
        impl="martlet_hqq.quantizer:HqqQuantizer",
        bits=(1, 2, 3, 4, 8),
        stages=("load", "export"),
        requires=_REQUIRES,
        options="martlet_hqq.options:HqqOptions",
        capabilities={"cpu", "cuda", "train"},
        summary="HQQ: calibration-free 1/2/3/4/8-bit weights (group-wise), at load time "
        "(QLoRA, CPU or GPU) and at export (reload with --model-loader hqq).",
    )


@hookimpl
def martlet_model_loaders():
    yield ModelLoaderRecord(
        name="hqq",
        impl="martlet_hqq.quantizer:HqqLoader",
        sources=("hqq-dir",),
        requires=_REQUIRES,
        summary="Folders written by `martlet export --quant-method hqq` (HQQ layers rebuilt "
        "from safetensors; transformers cannot load them itself).",
    )
