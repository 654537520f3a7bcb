"""KTO against values worked out with `math`."""

from __future__ import annotations

import math

import pytest
import torch
from martlet_align.kto import kto


def sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


POLICY = [-4.0, -6.0, -3.0, -8.0]
REFERENCE = [-5.0, -5.5, -3.5, -7.0]
LABELS = [True, False, True, False]


def expected(beta, kl, wd, wu):
    losses = []
    for p, r, good in zip(POLICY, REFERENCE, LABELS, strict=True):
        rho = p - r
        losses.append(
            wd * (1 - sig(beta * (rho - kl))) if good else wu * (1 - sig(beta * (kl - rho)))
        )
    return losses


def test_kto_matches_hand_values():
    beta, wd, wu = 0.5, 1.5, 0.7
    policy_kl, reference_kl = [-3.0, -4.0, -2.0, -6.0], [-3.5, -4.2, -2.1, -6.0]
    kl = sum(p - r for p, r in zip(policy_kl, reference_kl, strict=True)) / 4  # 0.2
    out = kto(
        torch.tensor(POLICY, dtype=torch.float64),
        torch.tensor(REFERENCE, dtype=torch.float64),
        torch.tensor(LABELS),
        torch.tensor(policy_kl, dtype=torch.float64),
        torch.tensor(reference_kl, dtype=torch.float64),
        beta=beta,
        desirable_weight=wd,
        undesirable_weight=wu,
    )
    assert float(out.kl) == pytest.approx(kl)
    assert out.losses.tolist() == pytest.approx(expected(beta, kl, wd, wu), rel=1e-12)
    rewards = [beta * (p - r) for p, r in zip(POLICY, REFERENCE, strict=True)]
    assert out.rewards.tolist() == pytest.approx(rewards)
    assert out.chosen_rewards.tolist() == pytest.approx([rewards[0], rewards[2]])
    assert out.rejected_rewards.tolist() == pytest.approx([rewards[1], rewards[3]])


def test_a_negative_kl_estimate_is_clamped_to_zero():
    out = kto(
        torch.tensor(POLICY),
        torch.tensor(REFERENCE),
        torch.tensor(LABELS),
        torch.tensor([-5.0, -5.0]),
        torch.tensor([-3.0, -4.0]),
        beta=0.1,
    )
    assert float(out.kl) == 0.0
    assert out.losses.tolist() == pytest.approx(expected(0.1, 0.0, 1.0, 1.0), rel=1e-6)


def test_without_kl_pairs_the_baseline_is_zero():
    out = kto(torch.tensor(POLICY), torch.tensor(REFERENCE), LABELS, None, None)
    assert float(out.kl) == 0.0
    with pytest.raises(ValueError, match="both policy_kl_logps and reference_kl_logps"):
        kto(torch.tensor(POLICY), torch.tensor(REFERENCE), LABELS, torch.tensor([-1.0]), None)


def test_gradients_flow_into_the_policy_only_and_in_the_right_direction():
    policy = torch.tensor(POLICY, requires_grad=True)
    policy_kl = torch.tensor([-3.0, -4.0], requires_grad=True)
    out = kto(
        policy, torch.tensor(REFERENCE), torch.tensor(LABELS), policy_kl, torch.tensor([-3.5, -4.5])
    )
    out.losses.sum().backward()
    assert policy_kl.grad is None  # the KL baseline is detached
    labels = torch.tensor(LABELS)
    assert (policy.grad[labels] < 0).all() and (policy.grad[~labels] > 0).all()
    assert not out.rewards.requires_grad and not out.kl.requires_grad


@pytest.mark.parametrize("extreme", [1e4, -1e4, 1e-8, -1e-8])
def test_kto_is_finite_at_extreme_log_ratios(extreme):
    policy = torch.full((4,), extreme, requires_grad=True)
    out = kto(policy, torch.zeros(4), torch.tensor(LABELS), torch.zeros(4), torch.zeros(4))
    assert torch.isfinite(out.losses).all()
    out.losses.sum().backward()
    assert torch.isfinite(policy.grad).all()


def test_labels_must_match_the_rows():
    with pytest.raises(ValueError, match="labels has shape"):
        kto(torch.tensor(POLICY), torch.tensor(REFERENCE), [True], None, None)
    with pytest.raises(TypeError):
        kto(torch.tensor(POLICY), torch.tensor(REFERENCE), LABELS, None, None, label_smoothing=0.1)
