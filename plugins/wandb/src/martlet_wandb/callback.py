"""Metrics to a Weights & Biases run."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class WandbCallback:
    """One W&B run per training run, named after the output directory unless
    ``--wandb-run-name`` says otherwise (options: :class:`~martlet_wandb.options.WandbOptions`)."""

    def __init__(
        self,
        output_dir: str | Path = ".",
        wandb_project: str | None = None,
        wandb_entity: str | None = None,
        wandb_run_name: str | None = None,
        **_: Any,
    ) -> None:
        import wandb

        self.run = wandb.init(
            project=wandb_project or os.environ.get("WANDB_PROJECT", "martlet"),
            entity=wandb_entity or os.environ.get("WANDB_ENTITY") or None,
            name=wandb_run_name or Path(output_dir).resolve().name,
            dir=str(output_dir),
        )

    def on_log(self, step: int, metrics: Mapping[str, Any]) -> None:
        numbers = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and k != "step"}
        self.run.log(numbers, step=step)

    def on_end(self) -> None:
        self.run.finish()
