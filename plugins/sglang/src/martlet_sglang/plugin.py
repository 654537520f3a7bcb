"""Registers the `sglang` inference backend (no SGLang or torch import here)."""

from martlet import hookimpl
from martlet.records import BackendRecord

MARTLET_API = 1


@hookimpl
def martlet_inference_backends():
    yield BackendRecord(
        name="sglang",
        impl="martlet_sglang.engine:SglangEngine",
        options="martlet_sglang.options:SglangOptions",
        # sglang itself is checked when the engine starts (with CUDA): listing, --help and
        # option checks work without it
        capabilities={"serve", "stream", "sampling", "logprobs", "lora", "token-ids", "cuda"},
        summary="SGLang's engine (RadixAttention, continuous batching, LoRA) on CUDA GPUs.",
    )
