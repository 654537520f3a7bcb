"""Registers the `wandb` callback (no wandb import here)."""

from martlet import hookimpl
from martlet.records import CallbackRecord

MARTLET_API = 1


@hookimpl
def martlet_callbacks():
    yield CallbackRecord(
        name="wandb",
        impl="martlet_wandb.callback:WandbCallback",
        requires=("wandb",),
        options="martlet_wandb.options:WandbOptions",
        summary="Log training metrics to Weights & Biases (needs the wandb package).",
    )
