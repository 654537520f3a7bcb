"""Registers the ``bnb`` quantizer (no torch, transformers or bitsandbytes import here)."""

from martlet import hookimpl
from martlet.records import QuantizerRecord

from martlet_bnb import imports

MARTLET_API = 1

# whoever imports bitsandbytes first in this process (peft does, for every LoRA run), it
# imports without asking the Hugging Face Hub for a kernel (see martlet_bnb.imports)
imports.install()


@hookimpl
def martlet_quantizers():
    yield QuantizerRecord(
        name="bnb",
        aliases=("bitsandbytes",),
        impl="martlet_bnb.quantizer:BnbQuantizer",
        options="martlet_bnb.options:BnbOptions",
        bits=(4, 8),
        # "prequantized": a checkpoint saved with quant_method "bitsandbytes" loads through it
        stages=("load", "prequantized"),
        requires=("bitsandbytes>=0.45",),
        capabilities=("cpu", "cuda"),
        summary="bitsandbytes 4-bit (nf4, fp4) or 8-bit as the model loads; with a tuner, QLoRA.",
    )
