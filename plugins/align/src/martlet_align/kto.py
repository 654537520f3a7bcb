"""Kahneman-Tversky Optimization: a loss per unpaired completion labelled good or bad."""

from __future__ import annotations

from typing import Any

import torch

from martlet_align.output import KTOLossOutput


def kto(
    policy_logps: torch.Tensor,
    reference_logps: torch.Tensor,
    labels: Any,
    policy_kl_logps: torch.Tensor | None,
    reference_kl_logps: torch.Tensor | None,
    *,
    beta: float = 0.1,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> KTOLossOutput:
    r"""KTO (Ethayarajh et al. 2024, arXiv:2402.01306, Eq. 7), one loss per row.

    Takes **summed** log-probs of each completion under the policy and the reference, ``labels``
    (bool, True = desirable) and the summed log-probs of *mismatched* prompt/completion pairs
    (``policy_kl_logps``, ``reference_kl_logps``) that estimate the KL baseline
    :math:`z_0 = \max(0, \text{mean}(\pi_{kl} - \text{ref}_{kl}))`, detached (both None: 0).
    With :math:`\rho = \pi - \text{ref}`, desirable rows lose
    :math:`\lambda_D(1 - \sigma(\beta(\rho - z_0)))` and undesirable rows
    :math:`\lambda_U(1 - \sigma(\beta(z_0 - \rho)))`. ``losses`` are in input order; rewards
    :math:`\beta\rho` (detached) for every row, and the desirable/undesirable subsets.
    """
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta!r}")
    labels = torch.as_tensor(labels, device=policy_logps.device).bool()
    if labels.shape != policy_logps.shape:
        raise ValueError(
            f"labels has shape {tuple(labels.shape)}, the log-probs {tuple(policy_logps.shape)}"
        )
    if policy_kl_logps is None and reference_kl_logps is None:
        kl = torch.zeros((), dtype=policy_logps.dtype, device=policy_logps.device)
    elif policy_kl_logps is None or reference_kl_logps is None:
        raise ValueError("pass both policy_kl_logps and reference_kl_logps, or neither")
    else:
        kl = (policy_kl_logps - reference_kl_logps).mean().clamp(min=0).detach()
    logratio = policy_logps - reference_logps
    desirable = desirable_weight * torch.sigmoid(-beta * (logratio - kl))
    undesirable = undesirable_weight * torch.sigmoid(-beta * (kl - logratio))
    rewards = (beta * logratio).detach()
    return KTOLossOutput(
        losses=torch.where(labels, desirable, undesirable),
        rewards=rewards,
        chosen_rewards=rewards[labels],
        rejected_rewards=rewards[~labels],
        kl=kl,
    )
