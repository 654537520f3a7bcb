"""The online objectives on small hand-computed cases: each advantage estimator, each loss
aggregation, clipping on both sides, GSPO's sequence ratios, the k3 KL, PPO's GAE and value
loss, the ``inputs="rollouts"`` contract of the four classes, and the option checks."""

from __future__ import annotations

import math

import pytest
import torch
from martlet.errors import ConfigError
from martlet_align.online import (
    Grpo,
    Ppo,
    ReinforcePP,
    Rloo,
    clipped_policy_loss,
    discounted_returns,
    gae,
    group_advantages,
    k3_kl,
    loss_units,
    masked_whiten,
    reinforce_pp_advantages,
    rloo_advantages,
    rloo_policy_loss,
    token_rewards,
    value_loss,
)

D = torch.float64


def t(values, dtype=D):
    return torch.tensor(values, dtype=dtype)


def leaf(values):
    return t(values).requires_grad_(True)


# --------------------------------------------------------------------------- advantages


def test_group_advantages_by_hand():
    rewards = t([1, 0, 0, 1, 2, 2, 2, 2])
    std = math.sqrt(1 / 3)  # of 1, 0, 0, 1 with Bessel's correction
    half = 0.5 / (std + 1e-4)
    torch.testing.assert_close(
        group_advantages(rewards, 4, "group"), t([half, -half, -half, half, 0, 0, 0, 0])
    )
    torch.testing.assert_close(
        group_advantages(rewards, 4, "none"), t([0.5, -0.5, -0.5, 0.5, 0, 0, 0, 0])
    )
    batch_std = float(rewards.std())
    torch.testing.assert_close(
        group_advantages(rewards, 4, "batch"),
        t([0.5, -0.5, -0.5, 0.5, 0, 0, 0, 0]) / (batch_std + 1e-4),
    )
    # an unscorable completion (NaN) leaves its group's statistics and gets 0
    nan = group_advantages(t([1, float("nan"), 3, 5]), 4, "none")
    torch.testing.assert_close(nan, t([-2, 0, 0, 2]))


def test_rloo_advantages_by_hand():
    torch.testing.assert_close(rloo_advantages(t([1, 2, 3]), 3), t([-1.5, 0.0, 1.5]))
    # the same as ms-swift's G/(G-1) (r - mean)
    rewards = t([0.3, 1.7, -0.2, 4.0, 1.0, 1.0])
    grouped = rewards.view(-1, 3)
    swift = (grouped - grouped.mean(1, keepdim=True)) * 3 / 2
    torch.testing.assert_close(rloo_advantages(rewards, 3), swift.reshape(-1))
    normalized = rloo_advantages(rewards, 3, normalize=True)
    assert float(normalized.mean()) == pytest.approx(0.0, abs=1e-12)
    assert float(normalized.std()) == pytest.approx(1.0, rel=1e-3)


def test_token_rewards_and_returns():
    mask = torch.tensor([[1, 1, 1], [1, 1, 0], [0, 0, 0]])
    kl = t([[0.2, 0.2, 0.2], [0.4, 0.4, 9.0], [1.0, 1.0, 1.0]])
    rewards = token_rewards(t([1.0, 1.0, 5.0]), mask, kl, 0.5)
    torch.testing.assert_close(rewards, t([[-0.1, -0.1, 0.9], [-0.2, 0.8, 0.0], [0, 0, 0]]))
    returns = discounted_returns(rewards, mask, 1.0)
    torch.testing.assert_close(returns, t([[0.7, 0.8, 0.9], [0.6, 0.8, 0.0], [0, 0, 0]]))
    discounted = discounted_returns(t([[0.0, 0.0, 1.0]]), torch.ones(1, 3), 0.5)
    torch.testing.assert_close(discounted, t([[0.25, 0.5, 1.0]]))


def test_reinforce_pp_advantages_by_hand():
    """OpenRLHF's REINFORCE++: returns whitened over every token (population variance)."""
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    kl = t([[0.2, 0.2, 0.2], [0.4, 0.4, 0.0]])
    got = reinforce_pp_advantages(t([1.0, 1.0]), mask, kl=kl, beta=0.5)
    returns = [0.7, 0.8, 0.9, 0.6, 0.8]
    mean = sum(returns) / 5
    rstd = 1 / math.sqrt(sum((r - mean) ** 2 for r in returns) / 5)
    white = [(r - mean) * rstd for r in returns]
    want = t([white[:3], [*white[3:], 0.0]])
    torch.testing.assert_close(got, want)
    # REINFORCE++-baseline: the group mean comes off first (1, 0 -> 0.5, -0.5)
    base = reinforce_pp_advantages(t([1.0, 0.0]), mask, num_generations=2)
    returns = [0.5, 0.5, 0.5, -0.5, -0.5]
    rstd = 1 / math.sqrt(sum((r - 0.1) ** 2 for r in returns) / 5)
    torch.testing.assert_close(base, t([[0.4 * rstd] * 3, [-0.6 * rstd, -0.6 * rstd, 0]]))


def test_gae_by_hand():
    rewards, values, mask = t([[0, 0, 1.0]]), t([[0.5, 0.6, 0.7]]), torch.ones(1, 3)
    advantages, returns = gae(rewards, values, mask, gamma=1.0, lam=0.5)
    # A2 = 1 - .7 = .3; A1 = (.7 - .6) + .5 * .3 = .25; A0 = (.6 - .5) + .5 * .25 = .225
    torch.testing.assert_close(advantages, t([[0.225, 0.25, 0.3]]))
    torch.testing.assert_close(returns, t([[0.725, 0.85, 1.0]]))
    # lam 1, gamma 1: the advantage is the return-to-go minus the value
    advantages, returns = gae(rewards, values, mask, gamma=1.0, lam=1.0)
    torch.testing.assert_close(returns, t([[1.0, 1.0, 1.0]]))
    # padding: rewards and values there count as 0
    padded, _ = gae(t([[0, 1.0, 5.0]]), t([[0.5, 0.6, 9.0]]), torch.tensor([[1, 1, 0]]), 0.9, 0.95)
    d1 = 1.0 - 0.6
    d0 = 0.9 * 0.6 - 0.5
    torch.testing.assert_close(padded, t([[d0 + 0.9 * 0.95 * d1, d1, 0.0]]))


def test_masked_whiten_is_trls():
    x, mask = t([[1.0, 2.0, 3.0, 100.0]]), torch.tensor([[1, 1, 1, 0]])
    got = masked_whiten(x, mask)
    # mean 2, unbiased variance 1
    torch.testing.assert_close(got[0, :3], t([-1.0, 0.0, 1.0]) / math.sqrt(1 + 1e-8))
    kept = masked_whiten(x, mask, shift_mean=False)
    torch.testing.assert_close(kept[0, :3], got[0, :3] + 2.0)


# --------------------------------------------------------------------------- KL


def test_k3_value_and_gradient():
    logps, ref = leaf([-1.0, -2.0]), t([-1.5, -2.0])
    kl = k3_kl(logps, ref)
    torch.testing.assert_close(kl.detach(), t([math.exp(-0.5) + 0.5 - 1, 0.0]))
    kl.sum().backward()
    torch.testing.assert_close(logps.grad, t([1 - math.exp(-0.5), 0.0]))
    assert float(k3_kl(t([-3.0]), t([-0.1]))) > 0  # never negative


def test_beta_adds_the_k3_kl_and_zero_drops_the_reference():
    logps, mask, adv = leaf([[-1.0, -2.0]]), torch.ones(1, 2), t([0.0])
    loss_sum, count, metrics = clipped_policy_loss(
        logps, mask, adv, ref_logps=t([[-1.5, -2.0]]), beta=0.1
    )
    assert float((loss_sum / count).detach()) == pytest.approx(0.1 * (math.exp(-0.5) - 0.5) / 2)
    assert metrics["kl"] == pytest.approx(((math.exp(-0.5) - 0.5), 2.0))
    _, _, without = clipped_policy_loss(logps, mask, adv, beta=0.0)  # no ref_logps needed
    assert "kl" not in without
    with pytest.raises(ValueError, match="ref_logps"):
        clipped_policy_loss(logps, mask, adv, beta=0.1)


# --------------------------------------------------------------------------- aggregation

MASK = torch.tensor([[1, 1, 1], [1, 0, 0]])
ADV = t([1.0, -2.0])


@pytest.mark.parametrize(
    "loss_type, loss_sum, count, grads",
    [
        # on-policy: ratio 1, per token -A: row 0 (3 tokens) -1 each, row 1 (1 token) +2
        ("grpo", (-1 + 2), 2, [[-1 / 6] * 3, [1.0, 0, 0]]),
        ("bnpo", (-3 + 2) / 4, 1, [[-1 / 4] * 3, [0.5, 0, 0]]),
        ("dr_grpo", (-3 + 2) / 4, 2, [[-1 / 8] * 3, [0.25, 0, 0]]),
        ("dapo", (-3 + 2), 4, [[-1 / 4] * 3, [0.5, 0, 0]]),
    ],
)
def test_each_loss_type_by_hand(loss_type, loss_sum, count, grads):
    logps = leaf([[-1.0, -0.5, -2.0], [-0.3, -9.0, -9.0]])
    got_sum, got_count, _ = clipped_policy_loss(
        logps, MASK, ADV, loss_type=loss_type, max_completion_length=4
    )
    assert float(got_sum.detach()) == pytest.approx(loss_sum)
    assert got_count == count == loss_units(MASK, loss_type)
    (got_sum / got_count).backward()
    torch.testing.assert_close(logps.grad, t(grads))


def test_dr_grpo_needs_max_completion_length_and_bad_names_fail():
    logps = leaf([[-1.0, -0.5, -2.0], [-0.3, -9.0, -9.0]])
    with pytest.raises(ValueError, match="max_completion_length"):
        clipped_policy_loss(logps, MASK, ADV, loss_type="dr_grpo")
    with pytest.raises(ValueError, match="loss_type"):
        clipped_policy_loss(logps, MASK, ADV, loss_type="mean")
    with pytest.raises(ValueError, match="importance_sampling_level"):
        clipped_policy_loss(logps, MASK, ADV, importance_sampling_level="tokens")


# --------------------------------------------------------------------------- clipping


def _one_token(log_ratio, advantage, **options):
    logps = leaf([[0.0]])
    old = t([[-log_ratio]])
    loss_sum, count, metrics = clipped_policy_loss(
        logps, torch.ones(1, 1), t([advantage]), old_logps=old, **options
    )
    loss_sum.backward()
    return float(loss_sum.detach()), float(logps.grad), {k: s / n for k, (s, n) in metrics.items()}


def test_ratio_above_the_high_clip_with_positive_advantage_gets_no_gradient():
    loss, grad, metrics = _one_token(math.log(1.5), 2.0, epsilon=0.2)
    assert loss == pytest.approx(-1.2 * 2.0) and grad == 0.0
    assert metrics["clip_ratio/high_mean"] == 1 and metrics["clip_ratio/low_mean"] == 0
    assert metrics["clip_ratio/region_mean"] == 1
    # the same ratio with a negative advantage: unclipped (min picks 1.5 A), full gradient
    loss, grad, metrics = _one_token(math.log(1.5), -2.0, epsilon=0.2)
    assert loss == pytest.approx(3.0) and grad == pytest.approx(3.0)
    assert metrics["clip_ratio/region_mean"] == 0


def test_ratio_below_the_low_clip_with_negative_advantage_gets_no_gradient():
    loss, grad, metrics = _one_token(math.log(0.5), -2.0, epsilon=0.2)
    assert loss == pytest.approx(0.8 * 2.0) and grad == 0.0
    assert metrics["clip_ratio/low_mean"] == 1 and metrics["clip_ratio/high_mean"] == 0
    loss, grad, _ = _one_token(math.log(0.5), 2.0, epsilon=0.2)  # positive: unclipped
    assert loss == pytest.approx(-1.0) and grad == pytest.approx(-1.0)


def test_epsilon_high_raises_only_the_upper_clip():
    _, grad, _ = _one_token(math.log(1.25), 1.0, epsilon=0.2)
    assert grad == 0.0  # clipped at 1.2
    _, grad, _ = _one_token(math.log(1.25), 1.0, epsilon=0.2, epsilon_high=0.28)
    assert grad == pytest.approx(-1.25)  # inside [0.8, 1.28]
    _, grad, _ = _one_token(math.log(0.75), -1.0, epsilon=0.2, epsilon_high=0.28)
    assert grad == 0.0  # the lower bound stays 1 - epsilon


def test_delta_caps_the_unclipped_ratio_of_negative_advantages():
    loss, grad, _ = _one_token(math.log(3.0), -1.0, epsilon=0.2)
    assert loss == pytest.approx(3.0) and grad == pytest.approx(3.0)
    loss, grad, _ = _one_token(math.log(3.0), -1.0, epsilon=0.2, delta=2.0)
    assert loss == pytest.approx(2.0) and grad == 0.0


# --------------------------------------------------------------------------- GSPO


def test_sequence_ratio_is_the_exp_of_the_mean_token_log_ratio():
    logps = leaf([[-1.0, -2.0, -3.0]])
    old = t([[-1.1, -2.3, -2.9]])  # log-ratios 0.1, 0.3, -0.1: mean 0.1
    mask = torch.ones(1, 3)
    ratio = math.exp(0.1)
    loss_sum, _, _ = clipped_policy_loss(
        logps, mask, t([1.0]), old_logps=old, importance_sampling_level="sequence"
    )
    assert float(loss_sum.detach()) == pytest.approx(-ratio)
    loss_sum.backward()
    torch.testing.assert_close(logps.grad, t([[-ratio / 3] * 3]))  # d exp(mean) / d p_t
    # sequence_token (GSPO-token): the same value and, with per-sequence advantages, the same
    # gradient
    again = leaf([[-1.0, -2.0, -3.0]])
    token_sum, _, _ = clipped_policy_loss(
        again, mask, t([1.0]), old_logps=old, importance_sampling_level="sequence_token"
    )
    assert float(token_sum.detach()) == pytest.approx(-ratio)
    token_sum.backward()
    torch.testing.assert_close(again.grad, logps.grad)
    # a whole sequence is clipped at once (mean log-ratio 0.5 > log 1.2)
    clipped = leaf([[-1.0, -2.0, -3.0]])
    loss_sum, _, metrics = clipped_policy_loss(
        clipped, mask, t([1.0]), old_logps=clipped.detach() - 0.5,
        importance_sampling_level="sequence",
    )  # fmt: skip
    loss_sum.backward()
    assert float(clipped.grad.abs().sum()) == 0.0
    assert metrics["clip_ratio/high_mean"] == (1.0, 1.0)  # one sequence, clipped


# --------------------------------------------------------------------------- equal rewards


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo", "dapo"])
@pytest.mark.parametrize("scale_rewards", ["group", "batch", "none"])
def test_equal_rewards_in_a_group_give_zero_gradient(loss_type, scale_rewards):
    algo = Grpo(num_generations=3, beta=0.0, loss_type=loss_type, scale_rewards=scale_rewards)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1], [1, 0, 0]])
    out = algo.advantages(t([0.7, 0.7, 0.7]), mask)
    assert torch.equal(out.advantages, torch.zeros(3, dtype=D))
    assert out.metrics["frac_reward_zero_std"] == 1.0
    logps = leaf([[-1.0, -2.0, -3.0], [-0.5, -0.5, -0.5], [-4.0, -1.0, -1.0]])
    old = logps.detach() + 0.3  # off-policy too
    loss_sum, _, _ = algo.loss(logps, mask, out.advantages, old_logps=old)
    loss_sum.backward()
    assert torch.equal(logps.grad, torch.zeros_like(logps))
    # and RLOO's leave-one-out baseline
    assert torch.equal(rloo_advantages(t([2.0, 2.0, 2.0, 2.0]), 4), torch.zeros(4, dtype=D))


# --------------------------------------------------------------------------- RLOO loss


def test_rloo_loss_uses_one_ratio_per_sequence_from_summed_log_probs():
    logps = leaf([[-1.0, -2.0], [-0.5, -9.0]])
    mask = torch.tensor([[1, 1], [1, 0]])
    old = t([[-1.1, -2.0], [-0.5, -9.0]])  # summed log-ratios 0.1 and 0
    loss_sum, count, _ = rloo_policy_loss(logps, mask, t([1.0, -1.0]), old_logps=old)
    assert count == 2
    assert float(loss_sum.detach()) == pytest.approx(-math.exp(0.1) + 1.0)
    loss_sum.backward()
    torch.testing.assert_close(logps.grad, t([[-math.exp(0.1)] * 2, [1.0, 0.0]]))


# --------------------------------------------------------------------------- PPO


def test_value_loss_by_hand():
    values, old, returns = leaf([[1.0, 0.5]]), t([[0.5, 0.5]]), t([[2.0, 0.6]])
    per_token, clipped = value_loss(values, old, returns, torch.ones(1, 2), cliprange_value=0.2)
    # token 0: clipped to 0.7, (0.7 - 2)^2 = 1.69 > (1 - 2)^2 = 1; token 1: unchanged, 0.01
    torch.testing.assert_close(per_token.detach(), t([[0.5 * 1.69, 0.5 * 0.01]]))
    torch.testing.assert_close(clipped, t([[1.0, 0.0]]))
    per_token.sum().backward()
    torch.testing.assert_close(values.grad, t([[0.0, -0.1]]))  # clipped: no gradient


def test_ppo_advantages_and_loss_by_hand():
    algo = Ppo(kl_coef=0.5, gamma=1.0, lam=1.0, vf_coef=0.1, cliprange_value=0.2)
    mask = torch.tensor([[1, 1], [1, 0]])
    old, ref = t([[-1.0, -1.0], [-2.0, 0.0]]), t([[-1.2, -1.0], [-2.0, 0.0]])
    values = t([[0.1, 0.2], [0.3, 0.0]])
    out = algo.advantages(t([1.0, 2.0]), mask, old_logps=old, ref_logps=ref, values=values)
    # rewards: row 0 [-0.5 * 0.2, 1.0], row 1 [2.0]; lam 1, gamma 1: returns-to-go
    torch.testing.assert_close(out.returns, t([[0.9, 1.0], [2.0, 0.0]]))
    raw = torch.tensor([0.9 - 0.1, 1.0 - 0.2, 2.0 - 0.3], dtype=D)
    want = (raw - raw.mean()) / torch.sqrt(raw.var() + 1e-8)  # TRL's masked_whiten
    torch.testing.assert_close(out.advantages[mask.bool()], want)
    assert float(out.advantages[1, 1]) == 0.0
    assert out.metrics["kl"] == pytest.approx(0.2 / 3)
    logps = leaf(old.tolist())
    current = leaf(values.tolist())
    loss_sum, count, metrics = algo.loss(
        logps, mask, out.advantages, old_logps=old, values=current, old_values=values,
        returns=out.returns,
    )  # fmt: skip
    assert count == 3 == algo.units(mask)
    policy = -(out.advantages * mask).sum()  # ratio 1
    vf = 0.5 * (((values - out.returns) ** 2) * mask).sum()
    assert float(loss_sum.detach()) == pytest.approx(float(policy + 0.1 * vf))
    assert metrics["value_loss"] == pytest.approx((float(vf), 3.0))


# --------------------------------------------------------------------------- the contract

ROLLOUT = {
    "logps": -torch.rand(4, 3, generator=torch.Generator().manual_seed(1), dtype=D),
    "mask": torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 0], [1, 1, 1]]),
}


@pytest.mark.parametrize(
    "algo",
    [
        Grpo(num_generations=2),
        Grpo(num_generations=2, beta=0.0, loss_type="dapo", num_iterations=2),
        Rloo(num_generations=2),
        ReinforcePP(num_generations=2),
        ReinforcePP(num_generations=1, advantage_estimator="reinforce", beta=0.0, gamma=0.9),
        Ppo(),
    ],
    ids=lambda a: type(a).__name__,
)
def test_every_class_answers_the_rollouts_contract(algo):
    logps, mask = ROLLOUT["logps"], ROLLOUT["mask"]
    old = logps + 0.05 if algo.uses_old_logps else None
    ref = logps - 0.1 if algo.uses_reference else None
    values = torch.zeros_like(logps) + 0.2 if algo.uses_values else None
    assert algo.group_size >= 1 and algo.iterations >= 1
    assert algo.generation["max_new_tokens"] == algo.max_completion_length
    out = algo.advantages(t([1.0, 0.0, 0.5, 0.25]), mask, old_logps=old, ref_logps=ref,
                          values=values)  # fmt: skip
    assert out.advantages.shape[0] == 4 and not out.advantages.requires_grad
    assert {"reward", "reward_std", "completions/mean_length"} <= set(out.metrics)
    current = logps.clone().requires_grad_(True)
    value_now = values.clone().requires_grad_(True) if values is not None else None
    loss_sum, count, metrics = algo.loss(
        current, mask, out.advantages, old_logps=old, ref_logps=ref, values=value_now,
        old_values=values, returns=out.returns, entropies=torch.ones_like(logps),
    )  # fmt: skip
    assert loss_sum.dim() == 0 and torch.isfinite(loss_sum)
    assert count == algo.units(mask)
    loss_sum.backward()
    assert current.grad is not None and torch.isfinite(current.grad).all()
    for name, (s, n) in metrics.items():
        assert math.isfinite(s) and math.isfinite(n) and n > 0, name
    assert {"entropy", "clip_ratio/low_mean", "clip_ratio/high_mean",
            "clip_ratio/region_mean"} <= set(metrics)  # fmt: skip


def test_what_each_run_needs():
    assert Grpo().uses_reference and not Grpo(beta=0.0).uses_reference
    assert not Grpo().uses_old_logps and Grpo(num_iterations=2).uses_old_logps
    assert Rloo().uses_old_logps and not Rloo(beta=0.0).uses_old_logps  # the KL in the reward
    assert ReinforcePP().uses_old_logps and not ReinforcePP(beta=0.0).uses_old_logps
    assert Ppo().uses_values and Ppo().group_size == 1 and Ppo().iterations == 4
    assert not Ppo(kl_coef=0.0).uses_reference
    assert Grpo(num_generations=4).group_size == 4


@pytest.mark.parametrize(
    "cls, options, flag",
    [
        (Grpo, {"epsilon": 0.0}, "--epsilon"),
        (Grpo, {"epsilon": -0.1}, "--epsilon"),
        (Grpo, {"epsilon_high": 0.0}, "--epsilon-high"),
        (Grpo, {"loss_type": "sum"}, "--loss-type"),
        (Grpo, {"scale_rewards": "std"}, "--scale-rewards"),
        (Grpo, {"importance_sampling_level": "seq"}, "--importance-sampling-level"),
        (Grpo, {"num_generations": 1}, "--num-generations"),
        (Grpo, {"beta": -0.1}, "--beta"),
        (Grpo, {"delta": 1.1}, "--delta"),
        (Grpo, {"num_iterations": 0}, "--num-iterations"),
        (Grpo, {"temperature": 0.0}, "--temperature"),
        (Grpo, {"top_p": 0.0}, "--top-p"),
        (Grpo, {"max_completion_length": 0}, "--max-completion-length"),
        (Rloo, {"num_generations": 1}, "--num-generations"),
        (ReinforcePP, {"num_generations": 1}, "--num-generations"),
        (ReinforcePP, {"gamma": 0.9}, "--gamma"),
        (ReinforcePP, {"advantage_estimator": "gae"}, "--advantage-estimator"),
        (Ppo, {"lam": 1.5}, "--lam"),
        (Ppo, {"cliprange_value": 0.0}, "--cliprange-value"),
        (Ppo, {"vf_coef": -1.0}, "--vf-coef"),
    ],
)
def test_bad_options_are_config_errors(cls, options, flag):
    with pytest.raises(ConfigError) as error:
        cls(**options)
    assert str(error.value).startswith(flag), str(error.value)


def test_groups_must_fit_the_rewards():
    with pytest.raises(ValueError, match="groups of 4"):
        group_advantages(t([1.0, 2.0, 3.0]), 4)


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo", "dapo"])
def test_micro_batches_add_up_as_the_loop_adds_them(loss_type):
    """The loop divides the step's summed loss_sum by its summed count: for grpo, dr_grpo and
    dapo that is the whole batch's loss; bnpo averages the micro-batches' token means (TRL's
    local normalisation)."""
    gen = torch.Generator().manual_seed(3)
    logps = -torch.rand(4, 5, generator=gen, dtype=D)
    old = logps + (torch.rand(4, 5, generator=gen, dtype=D) - 0.5) * 0.6
    mask = torch.tensor([[1] * 5, [1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]])
    adv = t([0.5, -1.0, 2.0, -0.3])
    options = dict(loss_type=loss_type, max_completion_length=5)

    def part(rows):
        return clipped_policy_loss(logps[rows], mask[rows], adv[rows], old_logps=old[rows],
                                   **options)[:2]  # fmt: skip

    whole_sum, whole_count = part(slice(0, 4))
    halves = [part(slice(0, 2)), part(slice(2, 4))]
    stepped = sum(s for s, _ in halves) / sum(c for _, c in halves)
    if loss_type == "bnpo":
        assert float(stepped) == pytest.approx(float(sum(s / c for s, c in halves) / 2))
    else:
        assert float(stepped) == pytest.approx(float(whole_sum / whole_count))
