"""The pt backend's own options (``--infer-backend pt --compile``); no torch import here."""

from __future__ import annotations

from dataclasses import dataclass

from martlet.config import option


@dataclass(kw_only=True)
class PtOptions:
    """PyTorch engine: compilation"""

    compile: bool = option(
        False,
        help="Serving (deploy, infer --port): compile the decoding step with torch.compile "
        "(inductor: frozen, pre-packed weights, fused projections, tuned kernels). About "
        "twice the tokens/s on a CPU, after a start-up of a few minutes. Not with adapters "
        "(merge one into its model with `martlet export --merge-lora`).",
    )
