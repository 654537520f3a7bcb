"""Registers the `pt` inference backend (no torch import here)."""

from martlet import hookimpl
from martlet.records import BackendRecord

MARTLET_API = 1


@hookimpl
def martlet_inference_backends():
    yield BackendRecord(
        name="pt",
        impl="martlet_engine_pt.engine:PtEngine",  # PtEngine.serving: the BatchingEngine
        options="martlet_engine_pt.options:PtOptions",
        aliases=("pytorch", "transformers"),
        requires=("torch", "transformers"),
        capabilities={
            "batch",
            "stream",
            "sampling",
            "token-ids",
            "live-model",  # martlet.load_engine: generates with a model object in memory
            "serve",
            "quantize",
            "cpu",
            "cuda",
            "mps",
        },
        summary="transformers with a KV cache: batched, greedy or sampling, streaming; serves "
        "with continuous batching (martlet_engine_pt.serving).",
    )
