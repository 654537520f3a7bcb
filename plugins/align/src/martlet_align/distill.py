"""On-policy distillation: the generalized Jensen-Shannon divergence of GKD."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

REDUCTIONS = ("sum", "mean", "none")


def _kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(p‖q) over the last dimension, from log-probabilities."""
    return (log_p.exp() * (log_p - log_q)).sum(-1)


def gkd(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: Any = None,
    *,
    beta: float = 0.5,
    temperature: float = 1.0,
    reduction: str = "sum",
) -> torch.Tensor:
    r"""Generalized JSD per token (GKD, Agarwal et al. 2024, arXiv:2306.13649, Eq. 1).

    Takes logits ``[B, T, V]`` (or ``[N, V]``) of the student and the teacher, already aligned
    with ``labels`` (``[B, T]`` or ``[N]``; positions equal to -100 are excluded, no shifting
    here). With :math:`s = \text{softmax}(z_s/\tau)`, :math:`t = \text{softmax}(z_t/\tau)` and
    :math:`m = \beta t + (1-\beta) s`, per token:
    :math:`\beta\,KL(t\|m) + (1-\beta)\,KL(s\|m)`; at the ends, as TRL's GKDTrainer does,
    ``beta=0`` gives :math:`KL(t\|s)` (forward KL) and ``beta=1`` :math:`KL(s\|t)` (reverse KL).

    ``reduction``: ``"sum"`` over kept tokens (divide by the global token count yourself),
    ``"mean"`` over kept tokens (0 when none is kept), ``"none"`` the per-token values with
    zeros at excluded positions. Logits must be finite; compute in the dtype you pass.
    """
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta!r}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; valid ones: {', '.join(REDUCTIONS)}")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} and teacher logits "
            f"{tuple(teacher_logits.shape)} differ in shape"
        )
    student = F.log_softmax(student_logits / temperature, dim=-1)
    teacher = F.log_softmax(teacher_logits / temperature, dim=-1)
    if beta == 0:
        per_token = _kl(teacher, student)
    elif beta == 1:
        per_token = _kl(student, teacher)
    else:
        mixture = torch.logaddexp(student + math.log1p(-beta), teacher + math.log(beta))
        per_token = beta * _kl(teacher, mixture) + (1 - beta) * _kl(student, mixture)

    if labels is None:
        count = per_token.numel()
    else:
        keep = torch.as_tensor(labels, device=per_token.device) != -100
        if keep.shape != per_token.shape:
            raise ValueError(
                f"labels have shape {tuple(keep.shape)}, the logits' leading shape is "
                f"{tuple(per_token.shape)}"
            )
        per_token = per_token.masked_fill(~keep, 0.0)
        count = keep.sum()
    if reduction == "none":
        return per_token
    total = per_token.sum()
    if reduction == "sum":
        return total
    if isinstance(count, torch.Tensor):
        return total / count.clamp(min=1).to(total.dtype)
    return total / max(count, 1)
