"""The options of the ddp and fsdp strategies (imported to build ``--help``: no torch here)."""

from __future__ import annotations

from dataclasses import dataclass

from martlet.config import option


@dataclass(kw_only=True)
class DdpOptions:
    """DDP"""

    ddp_find_unused_parameters: bool = option(
        False,
        help="Let DDP find parameters a step leaves without a gradient (slower; needed when "
        "the forward pass skips trainable layers).",
    )
    ddp_bucket_cap_mb: int = option(25, help="MiB of gradients all-reduced together.")


@dataclass(kw_only=True)
class FsdpOptions:
    """FSDP"""

    fsdp_reshard_after_forward: bool = option(
        True,
        help="Free a layer's gathered parameters after its forward pass and gather them again "
        "for the backward pass (less memory; off: kept until the backward pass, less traffic).",
    )
    fsdp_cpu_offload: bool = option(
        False,
        help="Keep the sharded parameters, gradients and optimizer state in the CPU's memory "
        "(GPUs only: on a CPU there is nothing to offload).",
    )
