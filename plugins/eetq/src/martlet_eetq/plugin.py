"""Registers the `eetq` quantizer (no torch import here). Its record requires nothing, so it
lists and explains what it needs on machines without a GPU or EETQ's kernels."""

from martlet import hookimpl
from martlet.records import QuantizerRecord

MARTLET_API = 1


@hookimpl
def martlet_quantizers():
    yield QuantizerRecord(
        name="eetq",
        impl="martlet_eetq.quantizer:EetqQuantizer",
        bits=(8,),
        stages=("load",),
        needs_cuda=True,
        requires=(),
        capabilities={"cuda", "train"},
        summary="EETQ int8 weights with fp16 activations at load time (QLoRA); CUDA GPUs only, "
        "kernels from the `kernels` package (transformers 5) or a source build of eetq.",
    )
