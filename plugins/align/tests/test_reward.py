"""The Bradley-Terry reward-model loss against values worked out with `math`."""

from __future__ import annotations

import math

import pytest
import torch
from martlet_align.reward import bradley_terry


def logsig(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


CHOSEN, REJECTED = [1.5, -0.2, 3.0], [0.5, 0.4, -1.0]


def test_bradley_terry_matches_hand_values():
    out = bradley_terry(torch.tensor(CHOSEN, dtype=torch.float64), torch.tensor(REJECTED))
    want = [-logsig(c - r) for c, r in zip(CHOSEN, REJECTED, strict=True)]
    assert out.losses.tolist() == pytest.approx(want, rel=1e-7)
    assert out.chosen_rewards.tolist() == pytest.approx(CHOSEN)
    assert out.rejected_rewards.tolist() == pytest.approx(REJECTED)


def test_margin_and_centering():
    margin, coef = [0.5, 0.0, 2.0], 0.01
    out = bradley_terry(
        torch.tensor(CHOSEN, dtype=torch.float64),
        torch.tensor(REJECTED, dtype=torch.float64),
        margin=torch.tensor(margin),
        center_rewards_coefficient=coef,
    )
    want = [
        -logsig(c - r - m) + coef * (c + r) ** 2
        for c, r, m in zip(CHOSEN, REJECTED, margin, strict=True)
    ]
    assert out.losses.tolist() == pytest.approx(want, rel=1e-12)


def test_scores_of_shape_n_by_1_and_gradients():
    chosen = torch.tensor(CHOSEN).unsqueeze(-1).requires_grad_(True)
    rejected = torch.tensor(REJECTED).unsqueeze(-1).requires_grad_(True)
    out = bradley_terry(chosen, rejected)
    assert out.losses.shape == (3,) and out.chosen_rewards.shape == (3,)
    assert not out.chosen_rewards.requires_grad
    out.losses.sum().backward()
    assert (chosen.grad < 0).all() and (rejected.grad > 0).all()


@pytest.mark.parametrize("gap", [1e4, -1e4, 1e-8, -1e-8])
def test_finite_at_extreme_gaps(gap):
    chosen = torch.tensor([gap], requires_grad=True)
    out = bradley_terry(chosen, torch.zeros(1))
    assert torch.isfinite(out.losses).all()
    out.losses.sum().backward()
    assert torch.isfinite(chosen.grad).all()
