"""Registers the ddp and fsdp parallel strategies (no torch import here)."""

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
    yield ParallelRecord(
        name="fsdp",
        impl="martlet_dist.strategies:Fsdp",
        options="martlet_dist.options:FsdpOptions",
        multi_process=True,
        capabilities=("cpu", "cuda", "adapter", "full", "resume-any-world-size"),
        summary="fully sharded data parallel (FSDP2 fully_shard): every process holds 1/N of "
        "the parameters, gradients and optimizer state; saves whole files",
    )
