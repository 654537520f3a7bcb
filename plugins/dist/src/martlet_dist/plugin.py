"""Registers the ddp parallel strategy (no torch import here)."""

from martlet import hookimpl
from martlet.records import ParallelRecord

MARTLET_API = 1


@hookimpl
def martlet_parallel_strategies():
    yield ParallelRecord(
        name="ddp",
        impl="martlet_dist.strategies:Ddp",
        options="martlet_dist.options:DdpOptions",
        multi_process=True,
        capabilities=("cpu", "cuda", "adapter", "full", "resume-any-world-size"),
        summary="DistributedDataParallel: every process holds the model, gradients averaged "
        "(the default on more than one process)",
    )
