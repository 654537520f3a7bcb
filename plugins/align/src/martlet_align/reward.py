"""Reward-model training: the Bradley-Terry loss on scores of chosen and rejected responses."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from martlet_align.output import PreferenceLossOutput


def bradley_terry(
    chosen_rewards: torch.Tensor,
    rejected_rewards: torch.Tensor,
    *,
    margin: Any = None,
    center_rewards_coefficient: float | None = None,
) -> PreferenceLossOutput:
    r"""Bradley-Terry pairwise loss (InstructGPT, Ouyang et al. 2022, arXiv:2203.02155), per pair.

    Takes the scalar scores :math:`s_c, s_r` of a reward head (1-D, or ``[N, 1]``):
    :math:`-\log\sigma(s_c - s_r - m)` with an optional per-pair ``margin`` :math:`m`
    (Llama 2, arXiv:2307.09288), plus ``center_rewards_coefficient`` times
    :math:`(s_c + s_r)^2`, which keeps the scores centred on zero (Eisenstein et al. 2023,
    arXiv:2312.09244). The returned rewards are the scores, detached.
    """
    chosen, rejected = _flat(chosen_rewards), _flat(rejected_rewards)
    diff = chosen - rejected
    if margin is not None:
        diff = diff - torch.as_tensor(margin, device=diff.device).to(diff.dtype).reshape(-1)
    losses = -F.logsigmoid(diff)
    if center_rewards_coefficient:
        losses = losses + center_rewards_coefficient * (chosen + rejected) ** 2
    return PreferenceLossOutput(
        losses=losses, chosen_rewards=chosen.detach(), rejected_rewards=rejected.detach()
    )


def _flat(scores: torch.Tensor) -> torch.Tensor:
    return scores.squeeze(-1) if scores.dim() == 2 and scores.size(-1) == 1 else scores
