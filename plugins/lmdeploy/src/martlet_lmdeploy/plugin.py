"""Registers the `lmdeploy` inference backend (no LMDeploy or torch import here)."""

from martlet import hookimpl
from martlet.records import BackendRecord

MARTLET_API = 1


@hookimpl
def martlet_inference_backends():
    yield BackendRecord(
        name="lmdeploy",
        impl="martlet_lmdeploy.engine:LmdeployEngine",
        options="martlet_lmdeploy.options:LmdeployOptions",
        # lmdeploy itself is checked when the engine starts (with CUDA): listing, --help and
        # option checks work without it
        capabilities={"serve", "stream", "sampling", "logprobs", "lora", "token-ids", "cuda"},
        summary="LMDeploy's TurboMind or PyTorch engine (persistent batching, LoRA on the "
        "PyTorch engine) on CUDA GPUs.",
    )
