"""Registers the ``gptq`` quantizer (no torch, transformers or gptqmodel import here)."""

import logging
import os

from martlet import hookimpl
from martlet.records import QuantizerRecord

MARTLET_API = 1


def _quiet_gptqmodel() -> None:
    """PEFT imports gptqmodel wherever it is installed (to recognise its layers when it applies
    LoRA), and gptqmodel logs a banner to stdout as it is imported: in every command, where it
    corrupted `martlet infer --output -`. Its logger (logbar, light) keeps errors only (its
    warnings go to stdout too), unless MARTLET_DEBUG is set."""
    if os.environ.get("MARTLET_DEBUG"):
        return
    try:
        from logbar import LogBar
    except ImportError:
        return
    LogBar.shared().setLevel(logging.ERROR)


_quiet_gptqmodel()


@hookimpl
def martlet_quantizers():
    yield QuantizerRecord(
        name="gptq",
        impl="martlet_gptq.quantizer:GptqQuantizer",
        options="martlet_gptq.options:GptqOptions",
        bits=(2, 3, 4, 8),
        # "prequantized": a checkpoint whose config.json says quant_method "gptq" (gptqmodel,
        # auto-gptq, optimum) loads through transformers with gptqmodel's kernels
        stages=("export", "prequantized"),
        # transformers' GPTQ loader imports optimum.gptq and runs gptqmodel's kernels
        # <7.7: what is tested, and what keeps torch in place when the missing package is
        # installed as the error says (7.7 needs torch>=2.14.1)
        requires=("gptqmodel>=7.6,<7.7", "optimum>=1.24"),
        # the folder is what these engines load as it is (martlet export --output-type)
        engines=("vllm", "sglang"),
        capabilities=("cpu", "cuda"),
        summary="GPTQ 2/3/4/8-bit, calibrated on --dataset, exported through gptqmodel (CPU or "
        "GPU) for transformers, vLLM and SGLang; GPTQ checkpoints load on the CPU.",
    )
