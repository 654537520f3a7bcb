"""Registers the ``aqlm`` quantizer and the ``aqlm`` model loader (no torch, transformers or
aqlm import here)."""

from martlet import hookimpl
from martlet.records import ModelLoaderRecord, QuantizerRecord

MARTLET_API = 1

# <1.2: what is tested; the extra is only in the pip command a missing package is answered with
_REQUIRES = ("aqlm[cpu]>=1.1.7,<1.2", "transformers>=4.56")


@hookimpl
def martlet_quantizers():
    yield QuantizerRecord(
        name="aqlm",
        impl="martlet_aqlm.quantizer:AqlmQuantizer",
        # "prequantized" only: the aqlm package has no quantizer (AQLM's calibration lives in
        # the research repository), so there is no load-time or export stage
        stages=("prequantized",),
        # no fixed widths: a checkpoint's bits per weight follow from its codebooks
        # (num_codebooks x nbits_per_codebook / in_group_size: 1x16 over 8 inputs = 2 bits)
        bits=(),
        needs_cuda=False,
        requires=_REQUIRES,
        engines=("vllm",),
        capabilities=("cpu", "cuda", "train"),
        summary="AQLM checkpoints (quant_method aqlm) loaded through the aqlm package for "
        "inference and QLoRA, on the CPU or a GPU; no quantizer (checkpoints only).",
    )


@hookimpl
def martlet_model_loaders():
    yield ModelLoaderRecord(
        name="aqlm",
        impl="martlet_aqlm.loader:AqlmLoader",
        sources=("aqlm-dir",),
        requires=_REQUIRES,
        summary="AQLM checkpoint folders, through the hf loader with the list of unquantized "
        "weights corrected first (chosen by the folder's quant_method).",
    )
