"""Registers the `gguf` quantizer (no gguf, numpy or torch import here)."""

from martlet import hookimpl
from martlet.records import QuantizerRecord

MARTLET_API = 1


@hookimpl
def martlet_quantizers():
    yield QuantizerRecord(
        name="gguf",
        impl="martlet_gguf.writer:GgufExporter",
        bits=(32, 16, 8, 5, 4),
        stages=("export",),
        requires=("gguf>=0.10",),
        options="martlet_gguf.options:GgufOptions",
        summary="One llama.cpp GGUF file (f32, f16, bf16, q8_0, q5_0/1, q4_0/1) of a Llama model.",
    )
