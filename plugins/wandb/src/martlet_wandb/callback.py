"""Metrics to a Weights & Biases run."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class WandbCallback:
    """One W&B run per training run, named after the output directory."""

    def __init__(self, output_dir: str | Path = ".", **_: Any) -> None:
        import wandb

        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "martlet"),
            name=Path(output_dir).resolve().name,
            dir=str(output_dir),
        )

    def on_log(self, step: int, metrics: Mapping[str, Any]) -> None:
        numbers = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and k != "step"}
        self.run.log(numbers, step=step)

    def on_end(self) -> None:
        self.run.finish()
