"""Registers the `pt` inference backend (no torch import here)."""

from martlet import hookimpl
from martlet.records import BackendRecord

MARTLET_API = 1


@hookimpl
def martlet_inference_backends():
    yield BackendRecord(
        name="pt",
        impl="martlet_engine_pt.engine:PtEngine",
        aliases=("pytorch", "transformers"),
        requires=("torch", "transformers"),
        capabilities={"batch", "stream", "sampling", "token-ids", "cpu", "cuda", "mps"},
        summary="transformers generate() with a KV cache; batched, greedy or sampling, streaming.",
    )
