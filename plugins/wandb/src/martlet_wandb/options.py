"""The wandb callback's own options (``--report-to wandb --wandb-project NAME``); no wandb
import here."""

from __future__ import annotations

from dataclasses import dataclass

from martlet.config import option


@dataclass(kw_only=True)
class WandbOptions:
    """Weights & Biases: metrics to a W&B run"""

    wandb_project: str | None = option(
        None,
        help="The W&B project (default: $WANDB_PROJECT, else martlet).",
        metavar="NAME",
    )
    wandb_entity: str | None = option(
        None, help="The W&B team or user (default: $WANDB_ENTITY, else your own).", metavar="NAME"
    )
    wandb_run_name: str | None = option(
        None, help="The run's name in W&B (default: the output directory's name).", metavar="NAME"
    )
