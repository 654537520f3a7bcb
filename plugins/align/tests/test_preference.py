"""DPO (every loss type), SimPO, CPO and ORPO against values worked out with `math`, at the
numerically hard ends, in the direction of their gradients, and with the length convention."""

from __future__ import annotations

import math

import pytest
import torch
from martlet_align.preference import DPO_LOSS_TYPES, cpo, dpo, orpo, simpo

# two pairs: (policy chosen, policy rejected, reference chosen, reference rejected), summed
PAIRS = [(-5.0, -7.0, -6.0, -6.5), (-9.0, -4.0, -8.0, -5.0)]
CHOSEN_LENGTHS, REJECTED_LENGTHS = [4, 2], [5, 3]


def logsig(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def sig(x: float) -> float:
    return math.exp(logsig(x))


def tensors(rows=PAIRS, dtype=torch.float64):
    return [torch.tensor(column, dtype=dtype) for column in zip(*rows, strict=True)]


def lengths(values):
    return torch.tensor(values)


def expected_dpo(loss_type, pc, pr, rc, rr, beta, ls=0.0, cl=1, rl=1, delta=None):
    c, r = pc - rc, pr - rr
    d = c - r
    x = beta * d
    if loss_type == "sigmoid":
        return -logsig(x) * (1 - ls) - logsig(-x) * ls
    if loss_type == "robust":
        return (-logsig(x) * (1 - ls) + logsig(-x) * ls) / (1 - 2 * ls)
    if loss_type == "hinge":
        return max(0.0, 1 - x)
    if loss_type == "ipo":
        d_avg = (pc / cl - rc / cl) - (pr / rl - rr / rl)
        return (d_avg - 1 / (2 * beta)) ** 2
    if loss_type == "exo_pair":
        eps = ls or 1e-3
        return sig(x) * (logsig(x) - math.log(1 - eps)) + sig(-x) * (logsig(-x) - math.log(eps))
    if loss_type == "nca_pair":
        return -logsig(beta * c) - 0.5 * logsig(-beta * c) - 0.5 * logsig(-beta * r)
    if loss_type == "bco_pair":
        return -logsig(beta * c - delta) - logsig(-(beta * r - delta))
    if loss_type == "sppo_hard":
        return (c - 1 / (2 * beta)) ** 2 + (r + 1 / (2 * beta)) ** 2
    if loss_type == "apo_zero":
        return (1 - sig(beta * c)) + sig(beta * r)
    if loss_type == "apo_down":
        return sig(beta * c) + (1 - sig(beta * (c - r)))
    raise AssertionError(loss_type)


def bco_delta(beta):
    values = [beta * (pc - rc) for pc, _, rc, _ in PAIRS] + [
        beta * (pr - rr) for _, pr, _, rr in PAIRS
    ]
    return sum(values) / len(values)


# --------------------------------------------------------------------------- DPO known values


@pytest.mark.parametrize("loss_type", DPO_LOSS_TYPES)
@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_dpo_matches_hand_values(loss_type, beta):
    ls = 0.1 if loss_type in ("sigmoid", "robust", "exo_pair") else 0.0
    out = dpo(
        *tensors(),
        beta=beta,
        loss_type=loss_type,
        label_smoothing=ls,
        chosen_lengths=lengths(CHOSEN_LENGTHS),
        rejected_lengths=lengths(REJECTED_LENGTHS),
    )
    delta = bco_delta(beta)
    want = [
        expected_dpo(loss_type, *pair, beta, ls, cl, rl, delta)
        for pair, cl, rl in zip(PAIRS, CHOSEN_LENGTHS, REJECTED_LENGTHS, strict=True)
    ]
    assert out.losses.tolist() == pytest.approx(want, rel=1e-12, abs=1e-12)
    assert out.chosen_rewards.tolist() == pytest.approx([beta * (p[0] - p[2]) for p in PAIRS])
    assert out.rejected_rewards.tolist() == pytest.approx([beta * (p[1] - p[3]) for p in PAIRS])


def test_exo_pair_defaults_label_smoothing_to_1e_3():
    out = dpo(*tensors(), loss_type="exo_pair")
    want = [expected_dpo("exo_pair", *pair, 0.1, 1e-3) for pair in PAIRS]
    assert out.losses.tolist() == pytest.approx(want, rel=1e-12)


def test_bco_delta_overrides_the_batch_mean():
    out = dpo(*tensors(), loss_type="bco_pair", bco_delta=0.25)
    want = [expected_dpo("bco_pair", *pair, 0.1, delta=0.25) for pair in PAIRS]
    assert out.losses.tolist() == pytest.approx(want, rel=1e-12)


def test_ipo_without_lengths_takes_the_inputs_as_averaged():
    out = dpo(*tensors(), loss_type="ipo", beta=0.5)
    want = [expected_dpo("ipo", *pair, 0.5) for pair in PAIRS]
    assert out.losses.tolist() == pytest.approx(want, rel=1e-12)


def test_several_loss_types_are_a_weighted_sum():
    out = dpo(*tensors(), loss_type=["sigmoid", "hinge", "ipo"], loss_weights=[1.0, 0.5, 2.0])
    want = [
        expected_dpo("sigmoid", *p, 0.1)
        + 0.5 * expected_dpo("hinge", *p, 0.1)
        + 2.0 * expected_dpo("ipo", *p, 0.1)
        for p in PAIRS
    ]
    assert out.losses.tolist() == pytest.approx(want, rel=1e-12)
    unweighted = dpo(*tensors(), loss_type=("sigmoid", "hinge"))
    assert unweighted.losses.tolist() == pytest.approx(
        [expected_dpo("sigmoid", *p, 0.1) + expected_dpo("hinge", *p, 0.1) for p in PAIRS]
    )


def test_rpo_alpha_adds_the_chosen_nll_per_token():
    out = dpo(*tensors(), rpo_alpha=0.5, chosen_lengths=lengths(CHOSEN_LENGTHS))
    want = [
        expected_dpo("sigmoid", *p, 0.1) + 0.5 * (-p[0] / n)
        for p, n in zip(PAIRS, CHOSEN_LENGTHS, strict=True)
    ]
    assert out.losses.tolist() == pytest.approx(want, rel=1e-12)
    assert out.metrics["nll_loss"] == pytest.approx((5.0 / 4 + 9.0 / 2) / 2)


def test_policy_equal_to_reference_is_ln2_per_pair():
    pc, pr, _, _ = tensors()
    out = dpo(pc, pr, pc.clone(), pr.clone())
    assert out.losses.tolist() == [math.log(2)] * len(PAIRS)
    assert out.chosen_rewards.tolist() == [0.0, 0.0]


# --------------------------------------------------------------------------- reference-free


def test_simpo_matches_hand_values():
    beta, gamma, ls = 2.0, 0.5, 0.1
    out = simpo(
        *tensors()[:2],
        beta=beta,
        simpo_gamma=gamma,
        label_smoothing=ls,
        chosen_lengths=lengths(CHOSEN_LENGTHS),
        rejected_lengths=lengths(REJECTED_LENGTHS),
    )
    want, rewards = [], []
    for (pc, pr, _, _), cl, rl in zip(PAIRS, CHOSEN_LENGTHS, REJECTED_LENGTHS, strict=True):
        z = beta * ((pc / cl - pr / rl) - gamma / beta)
        want.append(-logsig(z) * (1 - ls) - logsig(-z) * ls)
        rewards.append((beta * pc / cl, beta * pr / rl))
    assert out.losses.tolist() == pytest.approx(want, rel=1e-12)
    assert out.chosen_rewards.tolist() == pytest.approx([r[0] for r in rewards])
    assert out.rejected_rewards.tolist() == pytest.approx([r[1] for r in rewards])


@pytest.mark.parametrize("loss_type", ["sigmoid", "hinge"])
def test_cpo_matches_hand_values(loss_type):
    beta, ls, alpha = 0.5, 0.1 if loss_type == "sigmoid" else 0.0, 0.7
    out = cpo(
        *tensors()[:2],
        beta=beta,
        loss_type=loss_type,
        label_smoothing=ls,
        cpo_alpha=alpha,
        chosen_lengths=lengths(CHOSEN_LENGTHS),
        rejected_lengths=lengths(REJECTED_LENGTHS),
    )
    want = []
    for (pc, pr, _, _), cl in zip(PAIRS, CHOSEN_LENGTHS, strict=True):
        x = beta * (pc - pr)
        pref = -logsig(x) * (1 - ls) - logsig(-x) * ls if loss_type == "sigmoid" else max(0, 1 - x)
        want.append(pref + alpha * (-pc / cl))
    assert out.losses.tolist() == pytest.approx(want, rel=1e-12)
    assert out.chosen_rewards.tolist() == pytest.approx([beta * p[0] for p in PAIRS])
    assert out.rejected_rewards.tolist() == pytest.approx([beta * p[1] for p in PAIRS])


def test_cpo_without_nll_needs_no_lengths():
    out = cpo(*tensors()[:2], cpo_alpha=0.0)
    assert out.losses.tolist() == pytest.approx([-logsig(0.1 * (p[0] - p[1])) for p in PAIRS])


def log1mexp(x: float) -> float:
    return math.log(-math.expm1(x)) if x > -math.log(2) else math.log1p(-math.exp(x))


def test_orpo_matches_hand_values():
    beta = 0.25
    rows = [(-0.5, -1.5), (-2.0, -0.1), (-1e-3, -30.0)]
    out = orpo(*tensors(rows), beta=beta)
    want, log_odds = [], []
    for pc, pr in rows:
        # odds(y) = p / (1 - p); the log odds ratio straight from the probabilities
        p_c, p_r = math.exp(pc), math.exp(pr)
        lo = math.log(p_c / (1 - p_c)) - math.log(p_r / (1 - p_r))
        assert lo == pytest.approx((pc - pr) - (log1mexp(pc) - log1mexp(pr)), rel=1e-9)
        log_odds.append(lo)
        want.append(-pc - beta * logsig(lo))
    assert out.losses.tolist() == pytest.approx(want, rel=1e-9)
    assert out.chosen_rewards.tolist() == pytest.approx([beta * r[0] for r in rows])
    assert out.metrics["log_odds_chosen"] == pytest.approx(sum(log_odds) / 3, rel=1e-9)
    assert out.metrics["log_odds_ratio"] == pytest.approx(
        sum(logsig(lo) for lo in log_odds) / 3, rel=1e-9
    )
    assert out.metrics["nll_loss"] == pytest.approx(-sum(r[0] for r in rows) / 3)


# --------------------------------------------------------------------------- lengths


def test_summed_plus_lengths_equals_averaged_without_lengths():
    pc, pr, rc, rr = tensors()
    cl, rl = lengths(CHOSEN_LENGTHS), lengths(REJECTED_LENGTHS)
    kw = dict(chosen_lengths=cl, rejected_lengths=rl)
    summed = dpo(pc, pr, rc, rr, loss_type="ipo", **kw).losses
    averaged = dpo(pc / cl, pr / rl, rc / cl, rr / rl, loss_type="ipo").losses
    torch.testing.assert_close(summed, averaged)
    torch.testing.assert_close(simpo(pc, pr, **kw).losses, simpo(pc / cl, pr / rl).losses)
    torch.testing.assert_close(orpo(pc, pr, **kw).losses, orpo(pc / cl, pr / rl).losses)
    # methods on summed log-probs ignore the lengths (except for their NLL terms)
    torch.testing.assert_close(dpo(pc, pr, rc, rr, **kw).losses, dpo(pc, pr, rc, rr).losses)


def test_one_length_without_the_other_is_an_error():
    pc, pr, rc, rr = tensors()
    with pytest.raises(ValueError, match="both chosen_lengths and rejected_lengths"):
        simpo(pc, pr, chosen_lengths=lengths(CHOSEN_LENGTHS))
    with pytest.raises(ValueError, match="both chosen_lengths and rejected_lengths"):
        dpo(pc, pr, rc, rr, loss_type="ipo", rejected_lengths=lengths(REJECTED_LENGTHS))


# --------------------------------------------------------------------------- errors


def test_bad_options_are_clear_errors():
    pc, pr, rc, rr = tensors()
    with pytest.raises(ValueError, match="unknown DPO loss_type 'dpop'.*sigmoid, robust"):
        dpo(pc, pr, rc, rr, loss_type="dpop")
    with pytest.raises(ValueError, match="loss_weights has 1 values for 2 loss types"):
        dpo(pc, pr, rc, rr, loss_type=["sigmoid", "ipo"], loss_weights=[1.0])
    with pytest.raises(ValueError, match="rpo_alpha.*chosen_lengths"):
        dpo(pc, pr, rc, rr, rpo_alpha=1.0)
    with pytest.raises(ValueError, match="robust DPO needs label_smoothing < 0.5"):
        dpo(pc, pr, rc, rr, loss_type="robust", label_smoothing=0.5)
    with pytest.raises(ValueError, match="cpo_alpha.*chosen_lengths"):
        cpo(pc, pr)
    with pytest.raises(ValueError, match="unknown CPO loss_type 'ipo'"):
        cpo(pc, pr, loss_type="ipo", cpo_alpha=0)
    with pytest.raises(ValueError, match="beta must be > 0"):
        simpo(pc, pr, beta=0)


def test_unknown_keywords_are_type_errors():
    pc, pr, rc, rr = tensors()
    with pytest.raises(TypeError):
        dpo(pc, pr, rc, rr, simpo_gamma=1.0)
    with pytest.raises(TypeError):
        simpo(pc, pr, rpo_alpha=1.0)
    with pytest.raises(TypeError):
        orpo(pc, pr, label_smoothing=0.1)
    with pytest.raises(TypeError):
        cpo(pc, pr, 0.1)  # options are keyword-only


# --------------------------------------------------------------------------- hard ends


EXTREMES = [1e4, -1e4, 1e-8, -1e-8, 0.0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("loss_type", DPO_LOSS_TYPES)
def test_dpo_is_finite_at_extreme_margins(loss_type, dtype):
    d = torch.tensor(EXTREMES, dtype=dtype)
    zero = torch.zeros_like(d)
    for pc, pr in ((d.clone(), zero.clone()), (zero.clone(), -d.clone())):
        pc.requires_grad_(True)
        pr.requires_grad_(True)
        out = dpo(
            pc,
            pr,
            zero,
            zero,
            loss_type=loss_type,
            beta=0.1,
            chosen_lengths=[3] * 5,
            rejected_lengths=[2] * 5,
            rpo_alpha=0.1,
        )
        assert torch.isfinite(out.losses).all(), out.losses
        out.losses.sum().backward()
        assert torch.isfinite(pc.grad).all() and torch.isfinite(pr.grad).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_reference_free_losses_are_finite_at_extreme_margins(dtype):
    d = torch.tensor(EXTREMES, dtype=dtype)
    for fn, kw in (
        (simpo, {}),
        (cpo, {"cpo_alpha": 0.0}),
        (cpo, {"loss_type": "hinge", "cpo_alpha": 0.0}),
    ):
        pc = d.clone().requires_grad_(True)
        pr = torch.zeros_like(d).requires_grad_(True)
        out = fn(pc, pr, **kw)
        assert torch.isfinite(out.losses).all(), (fn, out.losses)
        out.losses.sum().backward()
        assert torch.isfinite(pc.grad).all() and torch.isfinite(pr.grad).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_orpo_is_finite_near_zero_and_very_negative(dtype):
    ends = [-1e-9, -1e-4, -0.69, -0.7, -1e4]
    rows = [(a, b) for a in ends for b in ends] + [(0.0, -1.0)]  # 0.0: a rounded average
    pc, pr = (torch.tensor(c, dtype=dtype).requires_grad_(True) for c in zip(*rows, strict=True))
    out = orpo(pc, pr)
    assert torch.isfinite(out.losses).all(), out.losses
    assert all(math.isfinite(v) for v in out.metrics.values()), out.metrics
    out.losses.sum().backward()
    assert torch.isfinite(pc.grad).all() and torch.isfinite(pr.grad).all()


def test_orpo_log_odds_near_zero_are_accurate():
    out = orpo(torch.tensor([-1e-9]), torch.tensor([-1e4]), beta=1.0)
    # log(p/(1-p)) at p = exp(-1e-9): -log(1e-9) to first order; rejected: log odds = -1e4
    lo = (-1e-9 + 1e4) - (math.log(1e-9) - 0.0)
    assert out.metrics["log_odds_chosen"] == pytest.approx(lo, rel=1e-6)


# --------------------------------------------------------------------------- gradients


DESCENDING = [t for t in DPO_LOSS_TYPES if t != "apo_down"]  # apo_down lowers the chosen too


@pytest.mark.parametrize("loss_type", DESCENDING)
def test_raising_the_chosen_logps_lowers_dpo_losses(loss_type):
    pc, pr, rc, rr = tensors([(-5.0, -5.2, -5.1, -5.0), (-3.0, -3.1, -3.0, -3.3)])
    pc.requires_grad_(True)
    dpo(
        pc,
        pr,
        rc,
        rr,
        loss_type=loss_type,
        label_smoothing=0.1 if loss_type == "robust" else 0,
        chosen_lengths=[2, 2],
        rejected_lengths=[2, 2],
    ).losses.sum().backward()
    assert (pc.grad < 0).all(), pc.grad


@pytest.mark.parametrize(
    "fn, kw",
    [(simpo, {}), (cpo, {}), (cpo, {"loss_type": "hinge"}), (orpo, {})],
    ids=["simpo", "cpo", "cpo-hinge", "orpo"],
)
def test_raising_the_chosen_logps_lowers_reference_free_losses(fn, kw):
    pc, pr, _, _ = tensors()
    pc.requires_grad_(True)
    fn(
        pc,
        pr,
        chosen_lengths=lengths(CHOSEN_LENGTHS),
        rejected_lengths=lengths(REJECTED_LENGTHS),
        **kw,
    ).losses.sum().backward()
    assert (pc.grad < 0).all(), pc.grad


def test_rewards_are_detached_and_losses_carry_gradients():
    pc, pr, rc, rr = tensors()
    pc.requires_grad_(True)
    for out in (dpo(pc, pr, rc, rr), simpo(pc, pr), orpo(pc, pr), cpo(pc, pr, cpo_alpha=0)):
        assert out.losses.requires_grad
        assert not out.chosen_rewards.requires_grad and not out.rejected_rewards.requires_grad
