"""GKD's generalized JSD against sums of p log(p/q) written out in Python."""

from __future__ import annotations

import math

import pytest
import torch
from martlet_align.distill import gkd

# two positions over a 3-token vocabulary
STUDENT = [[2.0, 0.5, -1.0], [0.0, 0.1, 0.2]]
TEACHER = [[0.0, 1.0, 3.0], [-2.0, 0.0, 2.0]]


def softmax(logits, temperature=1.0):
    exps = [math.exp(x / temperature) for x in logits]
    total = sum(exps)
    return [e / total for e in exps]


def kl(p, q):
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))


def jsd(student, teacher, beta, temperature=1.0):
    s, t = softmax(student, temperature), softmax(teacher, temperature)
    if beta == 0:
        return kl(t, s)
    if beta == 1:
        return kl(s, t)
    m = [beta * ti + (1 - beta) * si for si, ti in zip(s, t, strict=True)]
    return beta * kl(t, m) + (1 - beta) * kl(s, m)


def logits(rows):
    return torch.tensor(rows, dtype=torch.float64)


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0, 0.3])
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_gkd_matches_the_sums(beta, temperature):
    want = [jsd(s, t, beta, temperature) for s, t in zip(STUDENT, TEACHER, strict=True)]
    per_token = gkd(
        logits(STUDENT), logits(TEACHER), beta=beta, temperature=temperature, reduction="none"
    )
    assert per_token.tolist() == pytest.approx(want, rel=1e-12)
    total = gkd(logits(STUDENT), logits(TEACHER), beta=beta, temperature=temperature)
    assert float(total) == pytest.approx(sum(want), rel=1e-12)
    mean = gkd(
        logits(STUDENT), logits(TEACHER), beta=beta, temperature=temperature, reduction="mean"
    )
    assert float(mean) == pytest.approx(sum(want) / 2, rel=1e-12)


def test_labels_exclude_positions():
    student = logits([STUDENT, STUDENT[::-1]])  # [2, 2, 3]
    teacher = logits([TEACHER, TEACHER])
    labels = torch.tensor([[5, -100], [-100, 7]])
    kept = [jsd(STUDENT[0], TEACHER[0], 0.5), jsd(STUDENT[0], TEACHER[1], 0.5)]
    per_token = gkd(student, teacher, labels, reduction="none")
    assert per_token.shape == (2, 2)
    assert per_token.flatten().tolist() == pytest.approx([kept[0], 0.0, 0.0, kept[1]], rel=1e-12)
    assert float(gkd(student, teacher, labels)) == pytest.approx(sum(kept), rel=1e-12)
    assert float(gkd(student, teacher, labels, reduction="mean")) == pytest.approx(
        sum(kept) / 2, rel=1e-12
    )
    nothing = torch.full((2, 2), -100)
    assert float(gkd(student, teacher, nothing, reduction="mean")) == 0.0


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
def test_zero_between_identical_distributions_and_gradients_flow(beta):
    teacher = torch.randn(2, 4, 11, generator=torch.Generator().manual_seed(0))
    assert float(gkd(teacher.clone(), teacher, beta=beta)) == pytest.approx(0.0, abs=1e-6)
    student = torch.randn(2, 4, 11, requires_grad=True)
    loss = gkd(student, teacher, torch.zeros(2, 4, dtype=torch.long), beta=beta)
    assert loss.dim() == 0 and loss > 0
    loss.backward()
    assert torch.isfinite(student.grad).all() and student.grad.abs().sum() > 0


def test_extreme_logits_stay_finite():
    student = torch.tensor([[1e4, -1e4, 0.0]], requires_grad=True)
    teacher = torch.tensor([[-1e4, 1e4, 0.0]])
    for beta in (0.0, 0.5, 1.0):
        loss = gkd(student, teacher, beta=beta)
        assert torch.isfinite(loss)
        loss.backward()
        assert torch.isfinite(student.grad).all()
        student.grad = None


def test_bad_options_are_clear_errors():
    s, t = logits(STUDENT), logits(TEACHER)
    with pytest.raises(ValueError, match="beta must be in"):
        gkd(s, t, beta=1.5)
    with pytest.raises(ValueError, match="unknown reduction 'batchmean'"):
        gkd(s, t, reduction="batchmean")
    with pytest.raises(ValueError, match="differ in shape"):
        gkd(s, t[:1])
    with pytest.raises(ValueError, match="labels have shape"):
        gkd(s, t, torch.tensor([1, 2, 3]))
