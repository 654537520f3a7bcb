"""Paired preference objectives: DPO (and its variants), SimPO, CPO and ORPO.

Every function takes one log-probability per response (1-D tensors, one value per pair) and
returns a :class:`~martlet_align.output.PreferenceLossOutput` with per-pair ``losses`` (reduce
them yourself) and detached implicit rewards. The runner passes *summed* log-probs together
with ``chosen_lengths``/``rejected_lengths`` (token counts); each function averages where its
method says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from martlet_align.output import PreferenceLossOutput

DPO_LOSS_TYPES = (
    "sigmoid",
    "robust",
    "hinge",
    "ipo",
    "exo_pair",
    "nca_pair",
    "bco_pair",
    "sppo_hard",
    "apo_zero",
    "apo_down",
)
CPO_LOSS_TYPES = ("sigmoid", "hinge")
_LN2 = math.log(2.0)


# --------------------------------------------------------------------------- helpers


def _check_beta(beta: float) -> None:
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta!r}")


def _lengths(lengths: Any, like: torch.Tensor) -> torch.Tensor:
    """Token counts as a tensor like ``like``; empty responses count as one token."""
    return torch.as_tensor(lengths, device=like.device).to(like.dtype).clamp(min=1)


def _averaged(
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    chosen_lengths: Any,
    rejected_lengths: Any,
    method: str,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probs divided by their lengths; unchanged (already averaged) without lengths."""
    if chosen_lengths is None and rejected_lengths is None:
        return chosen, rejected
    if chosen_lengths is None or rejected_lengths is None:
        raise ValueError(
            f"{method} averages log-probs per token: pass both chosen_lengths and "
            "rejected_lengths (with summed log-probs), or neither (with averaged log-probs)"
        )
    return chosen / _lengths(chosen_lengths, chosen), rejected / _lengths(
        rejected_lengths, rejected
    )


def _chosen_nll(chosen_logps: torch.Tensor, chosen_lengths: Any, what: str) -> torch.Tensor:
    """Per-pair NLL of the chosen response: minus its summed log-prob over its length."""
    if chosen_lengths is None:
        raise ValueError(
            f"{what} adds the chosen response's NLL per token, which needs chosen_lengths "
            "(token counts) along with the summed log-probs"
        )
    return -chosen_logps / _lengths(chosen_lengths, chosen_logps)


def _smoothed_sigmoid(logits: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """``-logσ(x)(1-ls) - logσ(-x)·ls`` (conservative DPO; plain DPO at ls = 0)."""
    losses = -F.logsigmoid(logits)
    if label_smoothing:
        losses = losses * (1 - label_smoothing) - F.logsigmoid(-logits) * label_smoothing
    return losses


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """``log(1 - exp(x))`` for ``x < 0``, stable on both ends (Mächler 2012).

    Each branch sees only inputs it is accurate for, so neither produces inf/NaN gradients.
    """
    near_zero = x > -_LN2
    x_near = torch.where(near_zero, x, torch.full_like(x, -_LN2))
    x_far = torch.where(near_zero, torch.full_like(x, -1.0), x)
    return torch.where(near_zero, torch.log(-torch.expm1(x_near)), torch.log1p(-torch.exp(x_far)))


def _scalars(**values: torch.Tensor) -> dict[str, float]:
    """Detached means as floats, fetched from the device in one transfer."""
    means = torch.stack([v.detach().double().mean() for v in values.values()]).tolist()
    return dict(zip(values, means, strict=True))


# --------------------------------------------------------------------------- DPO


def dpo(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    reference_chosen_logps: torch.Tensor,
    reference_rejected_logps: torch.Tensor,
    *,
    beta: float = 0.1,
    loss_type: str | Sequence[str] = "sigmoid",
    loss_weights: Sequence[float] | None = None,
    label_smoothing: float = 0.0,
    rpo_alpha: float | None = None,
    bco_delta: float | None = None,
    chosen_lengths: Any = None,
    rejected_lengths: Any = None,
) -> PreferenceLossOutput:
    r"""Direct Preference Optimization and its variants, per pair.

    Takes **summed** log-probs of each response under the policy and the reference (``ipo``
    divides them by ``chosen_lengths``/``rejected_lengths`` when given; without lengths it
    takes the inputs as already averaged). With :math:`c = \pi_c - \text{ref}_c`,
    :math:`r = \pi_r - \text{ref}_r`, :math:`\Delta = c - r` and label smoothing :math:`\epsilon`:

    - ``sigmoid`` (DPO, Rafailov et al. 2023, arXiv:2305.18290; cDPO for
      :math:`\epsilon > 0`): :math:`-\log\sigma(\beta\Delta)(1-\epsilon)
      - \log\sigma(-\beta\Delta)\epsilon`
    - ``robust`` (rDPO, Chowdhury et al. 2024, arXiv:2403.00409):
      :math:`(-\log\sigma(\beta\Delta)(1-\epsilon) + \log\sigma(-\beta\Delta)\epsilon)
      / (1-2\epsilon)`
    - ``hinge`` (SLiC, Zhao et al. 2023, arXiv:2305.10425): :math:`\max(0, 1 - \beta\Delta)`
    - ``ipo`` (Azar et al. 2023, arXiv:2310.12036): :math:`(\Delta - 1/(2\beta))^2` on
      length-averaged log-probs
    - ``exo_pair`` (EXO, Ji et al. 2024, arXiv:2402.00856; :math:`\epsilon` defaults to 1e-3):
      :math:`\sigma(\beta\Delta)(\log\sigma(\beta\Delta) - \log(1-\epsilon))
      + \sigma(-\beta\Delta)(\log\sigma(-\beta\Delta) - \log\epsilon)`
    - ``nca_pair`` (NCA, Chen et al. 2024, arXiv:2402.05369):
      :math:`-\log\sigma(\beta c) - \tfrac12\log\sigma(-\beta c) - \tfrac12\log\sigma(-\beta r)`
    - ``bco_pair`` (BCO, Jung et al. 2024, arXiv:2404.04656):
      :math:`-\log\sigma(\beta c - \delta) - \log\sigma(-(\beta r - \delta))`, :math:`\delta`
      the detached batch mean of :math:`\beta c` and :math:`\beta r` (or ``bco_delta``)
    - ``sppo_hard`` (SPPO, Wu et al. 2024, arXiv:2405.00675):
      :math:`(c - 1/(2\beta))^2 + (r + 1/(2\beta))^2`
    - ``apo_zero`` / ``apo_down`` (APO, D'Oosterlinck et al. 2024, arXiv:2408.06266):
      :math:`(1 - \sigma(\beta c)) + \sigma(\beta r)` /
      :math:`\sigma(\beta c) + (1 - \sigma(\beta\Delta))`

    ``loss_type`` may be a sequence; the losses are then summed with ``loss_weights`` (default
    1.0 each). ``rpo_alpha`` adds ``rpo_alpha`` times the chosen response's NLL per token,
    :math:`-\pi_c / |y_c|` (RPO, Pang et al. 2024, arXiv:2404.19733); it needs
    ``chosen_lengths``. Rewards are :math:`\beta c` and :math:`\beta r`, detached.
    """
    _check_beta(beta)
    types = (loss_type,) if isinstance(loss_type, str) else tuple(loss_type)
    if not types:
        raise ValueError("loss_type names no loss")
    for name in types:
        if name not in DPO_LOSS_TYPES:
            raise ValueError(
                f"unknown DPO loss_type {name!r}; valid ones: {', '.join(DPO_LOSS_TYPES)}"
            )
    if loss_weights is None:
        weights = (1.0,) * len(types)
    else:
        weights = tuple(float(w) for w in loss_weights)
        if len(weights) != len(types):
            raise ValueError(
                f"loss_weights has {len(weights)} values for {len(types)} loss types "
                f"({', '.join(types)}); give one weight per loss type"
            )
    ls = float(label_smoothing)
    if not 0.0 <= ls < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {ls}")

    chosen_logratios = policy_chosen_logps - reference_chosen_logps
    rejected_logratios = policy_rejected_logps - reference_rejected_logps
    delta = chosen_logratios - rejected_logratios

    losses: torch.Tensor | None = None
    for name, weight in zip(types, weights, strict=True):
        if name == "sigmoid":
            term = _smoothed_sigmoid(beta * delta, ls)
        elif name == "robust":
            if ls >= 0.5:
                raise ValueError(f"robust DPO needs label_smoothing < 0.5, got {ls}")
            term = (-F.logsigmoid(beta * delta) * (1 - ls) + F.logsigmoid(-beta * delta) * ls) / (
                1 - 2 * ls
            )
        elif name == "hinge":
            term = torch.relu(1 - beta * delta)
        elif name == "ipo":
            pc, pr = _averaged(
                policy_chosen_logps, policy_rejected_logps, chosen_lengths, rejected_lengths, "ipo"
            )
            rc, rr = _averaged(
                reference_chosen_logps,
                reference_rejected_logps,
                chosen_lengths,
                rejected_lengths,
                "ipo",
            )
            term = ((pc - rc) - (pr - rr) - 1 / (2 * beta)) ** 2
        elif name == "exo_pair":
            eps = ls if ls > 0 else 1e-3
            logits = beta * delta
            term = torch.sigmoid(logits) * (F.logsigmoid(logits) - math.log1p(-eps)) + (
                torch.sigmoid(-logits) * (F.logsigmoid(-logits) - math.log(eps))
            )
        elif name == "nca_pair":
            cr, rr_ = beta * chosen_logratios, beta * rejected_logratios
            term = -F.logsigmoid(cr) - 0.5 * F.logsigmoid(-cr) - 0.5 * F.logsigmoid(-rr_)
        elif name == "bco_pair":
            cr, rr_ = beta * chosen_logratios, beta * rejected_logratios
            if bco_delta is None:
                shift = torch.cat([cr, rr_]).mean().detach()
            else:
                shift = float(bco_delta)
            term = -F.logsigmoid(cr - shift) - F.logsigmoid(-(rr_ - shift))
        elif name == "sppo_hard":
            term = (chosen_logratios - 1 / (2 * beta)) ** 2 + (
                rejected_logratios + 1 / (2 * beta)
            ) ** 2
        elif name == "apo_zero":
            term = torch.sigmoid(-beta * chosen_logratios) + torch.sigmoid(
                beta * rejected_logratios
            )
        else:  # apo_down
            term = torch.sigmoid(beta * chosen_logratios) + torch.sigmoid(-beta * delta)
        term = term if weight == 1.0 else weight * term
        losses = term if losses is None else losses + term

    metrics: dict[str, float] = {}
    if rpo_alpha:
        nll = _chosen_nll(policy_chosen_logps, chosen_lengths, "rpo_alpha")
        losses = losses + rpo_alpha * nll
        metrics = _scalars(nll_loss=nll)

    return PreferenceLossOutput(
        losses=losses,
        chosen_rewards=(beta * chosen_logratios).detach(),
        rejected_rewards=(beta * rejected_logratios).detach(),
        metrics=metrics,
    )


# --------------------------------------------------------------------------- reference-free


def simpo(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    *,
    beta: float = 2.0,
    simpo_gamma: float = 1.0,
    label_smoothing: float = 0.0,
    chosen_lengths: Any = None,
    rejected_lengths: Any = None,
) -> PreferenceLossOutput:
    r"""SimPO (Meng et al. 2024, arXiv:2405.14734), reference-free, per pair.

    Takes **length-averaged** log-probs :math:`\bar\pi_c, \bar\pi_r` (or summed ones with
    ``chosen_lengths``/``rejected_lengths``). With :math:`z = (\bar\pi_c - \bar\pi_r) -
    \gamma/\beta`: :math:`-\log\sigma(\beta z)(1-\epsilon) - \log\sigma(-\beta z)\epsilon`.
    Rewards :math:`\beta\bar\pi_c`, :math:`\beta\bar\pi_r`, detached.
    """
    _check_beta(beta)
    pc, pr = _averaged(
        policy_chosen_logps, policy_rejected_logps, chosen_lengths, rejected_lengths, "simpo"
    )
    logits = (pc - pr) - simpo_gamma / beta
    return PreferenceLossOutput(
        losses=_smoothed_sigmoid(beta * logits, float(label_smoothing)),
        chosen_rewards=(beta * pc).detach(),
        rejected_rewards=(beta * pr).detach(),
    )


def cpo(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    *,
    beta: float = 0.1,
    loss_type: str = "sigmoid",
    label_smoothing: float = 0.0,
    cpo_alpha: float = 1.0,
    chosen_lengths: Any = None,
    rejected_lengths: Any = None,
) -> PreferenceLossOutput:
    r"""Contrastive Preference Optimization (Xu et al. 2024, arXiv:2401.08417), per pair.

    Takes **summed** log-probs. With :math:`z = \pi_c - \pi_r`: ``sigmoid``
    :math:`-\log\sigma(\beta z)(1-\epsilon) - \log\sigma(-\beta z)\epsilon` or ``hinge``
    :math:`\max(0, 1 - \beta z)`, plus ``cpo_alpha`` times the chosen response's NLL per token
    :math:`-\pi_c / |y_c|` (needs ``chosen_lengths`` unless ``cpo_alpha`` is 0).
    ``rejected_lengths`` is accepted for the runner's convention and unused. Rewards
    :math:`\beta\pi_c`, :math:`\beta\pi_r`, detached.
    """
    _check_beta(beta)
    logits = policy_chosen_logps - policy_rejected_logps
    if loss_type == "sigmoid":
        losses = _smoothed_sigmoid(beta * logits, float(label_smoothing))
    elif loss_type == "hinge":
        losses = torch.relu(1 - beta * logits)
    else:
        raise ValueError(
            f"unknown CPO loss_type {loss_type!r}; valid ones: {', '.join(CPO_LOSS_TYPES)}"
        )
    metrics: dict[str, float] = {}
    if cpo_alpha:
        nll = _chosen_nll(policy_chosen_logps, chosen_lengths, "cpo with cpo_alpha != 0")
        losses = losses + cpo_alpha * nll
        metrics = _scalars(nll_loss=nll)
    return PreferenceLossOutput(
        losses=losses,
        chosen_rewards=(beta * policy_chosen_logps).detach(),
        rejected_rewards=(beta * policy_rejected_logps).detach(),
        metrics=metrics,
    )


def orpo(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    *,
    beta: float = 0.1,
    chosen_lengths: Any = None,
    rejected_lengths: Any = None,
) -> PreferenceLossOutput:
    r"""Odds Ratio Preference Optimization (Hong et al. 2024, arXiv:2403.07691), per pair.

    Takes **length-averaged** log-probs :math:`\bar\pi_c, \bar\pi_r < 0` (or summed ones with
    ``chosen_lengths``/``rejected_lengths``). With the log odds
    :math:`\ell = (\bar\pi_c - \bar\pi_r) - (\log(1-e^{\bar\pi_c}) - \log(1-e^{\bar\pi_r}))`:
    :math:`-\bar\pi_c - \beta\log\sigma(\ell)` (the chosen NLL plus the odds-ratio term).
    Computed in at least float32; averages at or above zero (rounding) are taken as -1e-12 in
    the odds. Rewards :math:`\beta\bar\pi_c`, :math:`\beta\bar\pi_r`, detached; ``metrics`` has
    ``log_odds_ratio`` (mean of :math:`\log\sigma(\ell)`), ``log_odds_chosen`` (mean of
    :math:`\ell`) and ``nll_loss``.
    """
    _check_beta(beta)
    pc, pr = _averaged(
        policy_chosen_logps, policy_rejected_logps, chosen_lengths, rejected_lengths, "orpo"
    )
    if pc.dtype in (torch.float16, torch.bfloat16):
        pc, pr = pc.float(), pr.float()
    pc_odds, pr_odds = pc.clamp(max=-1e-12), pr.clamp(max=-1e-12)
    log_odds = (pc_odds - pr_odds) - (_log1mexp(pc_odds) - _log1mexp(pr_odds))
    ratio = F.logsigmoid(log_odds)
    nll = -pc
    return PreferenceLossOutput(
        losses=nll - beta * ratio,
        chosen_rewards=(beta * pc).detach(),
        rejected_rewards=(beta * pr).detach(),
        metrics=_scalars(log_odds_ratio=ratio, log_odds_chosen=log_odds, nll_loss=nll),
    )
