"""Registers `martlet infer` and `martlet deploy` (no torch import here)."""

from martlet import hookimpl
from martlet.records import CommandRecord

MARTLET_API = 1


@hookimpl
def martlet_commands():
    yield CommandRecord(
        name="infer",
        impl="martlet_serve.infer:infer",
        summary="Chat with a model or a trained run, answer one query, or run batch inference.",
    )
    yield CommandRecord(
        name="deploy",
        impl="martlet_serve.deploy:deploy",
        summary="Serve a model or a trained run behind an OpenAI-compatible HTTP API.",
    )
