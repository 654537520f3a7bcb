"""The lmdeploy backend's own options (``--infer-backend lmdeploy --lmdeploy-engine pytorch``);
no LMDeploy import here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from martlet.config import option, require


@dataclass(kw_only=True)
class LmdeployOptions:
    """LMDeploy: its engine, memory and parallelism"""

    lmdeploy_engine: Literal["auto", "turbomind", "pytorch"] = option(
        "auto",
        help="LMDeploy's engine: turbomind (faster, no LoRA) or pytorch; auto: pytorch when "
        "--adapters are served, else turbomind.",
    )
    cache_max_entry_count: float = option(
        0.8,
        help="The share of free GPU memory LMDeploy takes for the KV cache.",
        metavar="FRACTION",
    )
    tensor_parallel_size: int = option(1, help="GPUs each model is sharded over.", metavar="N")

    def __post_init__(self) -> None:
        fraction = self.cache_max_entry_count
        require(0 < fraction < 1, "cache-max-entry-count", fraction, "in (0, 1)", "0.5")
        require(self.tensor_parallel_size >= 1, "tensor-parallel-size",
                self.tensor_parallel_size, "at least 1", "2")  # fmt: skip
