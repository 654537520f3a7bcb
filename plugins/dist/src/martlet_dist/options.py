"""The options of the ddp strategy (imported to build ``--help``: no torch here)."""

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
