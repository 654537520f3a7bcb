"""Registers the ``awq`` quantizer (no torch, transformers or gptqmodel import here)."""

from martlet import hookimpl
from martlet.records import QuantizerRecord

# the hooks that keep PEFT from importing gptqmodel in LoRA commands whose model has none of
# its layers (martlet_configure, martlet_model_loaded; light: sys and importlib only)
from martlet_gptqmodel.peft_guard import martlet_configure, martlet_model_loaded  # noqa: F401

MARTLET_API = 1


@hookimpl
def martlet_quantizers():
    yield QuantizerRecord(
        name="awq",
        impl="martlet_awq.quantizer:AwqQuantizer",
        options="martlet_awq.options:AwqOptions",
        bits=(4,),
        # "prequantized": a checkpoint whose config.json says quant_method "awq" (AutoAWQ's
        # GEMM layout, gptqmodel's) loads through transformers with gptqmodel's kernels
        stages=("export", "prequantized"),
        # export packs with gptqmodel's portable torch kernel, so no CUDA is needed
        needs_cuda=False,
        # <7.7: what is tested, and what keeps torch in place when the missing package is
        # installed as the error says (7.7 needs torch>=2.14.1)
        requires=("gptqmodel>=7.6,<7.7",),
        # the folder is what these engines load as it is (martlet export --output-type)
        engines=("vllm", "sglang"),
        capabilities=("cpu", "cuda"),
        summary="AWQ 4-bit (GEMM layout), calibrated on --dataset, exported through gptqmodel "
        "(CPU or GPU) for transformers, vLLM and SGLang; AWQ checkpoints run on the CPU.",
    )
