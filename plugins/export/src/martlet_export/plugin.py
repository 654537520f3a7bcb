"""Registers `martlet export` (no torch import here)."""

from martlet import hookimpl
from martlet.records import CommandRecord

MARTLET_API = 1


@hookimpl
def martlet_commands():
    yield CommandRecord(
        name="export",
        impl="martlet_export.cli:export",
        summary="Merge adapters into a standalone model, or export a quantized copy.",
    )
