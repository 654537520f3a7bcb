"""What the preference and KTO losses return."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class PreferenceLossOutput:
    """Per-pair losses and (detached) implicit rewards of a preference objective.

    ``losses``, ``chosen_rewards`` and ``rejected_rewards`` are 1-D tensors, one value per pair;
    ``metrics`` holds extra scalars to log (for example ORPO's log-odds).
    """

    losses: Any
    chosen_rewards: Any
    rejected_rewards: Any
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class KTOLossOutput:
    """Per-row KTO losses in input order, the rewards of every row and of each subset, and the
    KL baseline (a detached scalar tensor)."""

    losses: Any
    rewards: Any
    chosen_rewards: Any
    rejected_rewards: Any
    kl: Any
    metrics: dict[str, float] = field(default_factory=dict)
