"""The online objectives give the same numbers as TRL's own code (trl 1.16) on the same tensors.

- GRPO's loss, every ``loss_type`` with token and sequence (GSPO) ratios, clipping on both
  sides, ``epsilon_high``, ``delta`` and the k3 KL: ``GRPOTrainer._compute_loss`` run with a
  stand-in trainer whose ``_get_per_token_logps_and_entropies`` returns our tensors. Values,
  gradients and the logged metrics (``kl``, ``entropy``, ``clip_ratio/*``).
- RLOO's loss: ``RLOOTrainer._compute_loss`` the same way.
- The advantages (GRPO's ``scale_rewards`` group/batch/none; RLOO's leave-one-out baseline with
  the KL in the reward and ``normalize_advantages``) live inline in the 400-line
  ``_generate_and_score_completions``: the lines that compute them are taken from TRL's source
  (between two marker lines) and run on our rewards.

TRL 1.16 has no PPO and no REINFORCE++: those are checked by hand in test_online.py.
"""

from __future__ import annotations

import inspect
import textwrap
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch
from martlet_align.online import (
    clipped_policy_loss,
    group_advantages,
    rloo_advantages,
    rloo_policy_loss,
)

trl = pytest.importorskip("trl")

N, T = 6, 5
GEN = torch.Generator().manual_seed(7)
MASK = torch.tensor(
    [
        [1, 1, 1, 1, 1],
        [1, 1, 1, 0, 0],
        [1, 0, 0, 0, 0],
        [1, 1, 1, 1, 0],
        [1, 1, 0, 0, 0],
        [1, 1, 1, 1, 1],
    ]
)
LOGPS = -torch.rand(N, T, generator=GEN, dtype=torch.float64) * 2 - 0.1
#: ratios from e^-0.6 to e^0.6: some tokens beyond 1 +- 0.2 on each side
OLD = LOGPS + (torch.rand(N, T, generator=GEN, dtype=torch.float64) - 0.5) * 1.2
REF = LOGPS + (torch.rand(N, T, generator=GEN, dtype=torch.float64) - 0.5)
ENTROPIES = torch.rand(N, T, generator=GEN, dtype=torch.float64) * 3
ADVANTAGES = torch.tensor([1.3, -0.7, 0.4, -1.9, 0.0, 2.2], dtype=torch.float64)
TOKEN_ADVANTAGES = torch.randn(N, T, generator=GEN, dtype=torch.float64)


class Accelerator:
    device = torch.device("cpu")
    num_processes = 1
    process_index = 0

    def gather(self, value):
        return value

    gather_for_metrics = gather

    def reduce(self, value, reduction="sum"):
        return value


def _grpo_trainer(logps, *, beta, epsilon, epsilon_high, delta, level, loss_type):
    return SimpleNamespace(
        _get_per_token_logps_and_entropies=lambda *a, **k: (logps, ENTROPIES, None),
        top_entropy_quantile=1.0,
        off_policy_mask_threshold=None,
        importance_sampling_level=level,
        beta=beta,
        args=SimpleNamespace(use_bias_correction_kl=False, delta=delta, steps_per_generation=1),
        loss_type=loss_type,
        epsilon_low=epsilon,
        epsilon_high=epsilon if epsilon_high is None else epsilon_high,
        use_vllm=False,
        vllm_importance_sampling_correction=False,
        model=SimpleNamespace(training=True),
        current_gradient_accumulation_steps=1,
        max_completion_length=8,
        accelerator=Accelerator(),
        _entropy_bonus_enabled=False,
        aux_loss_enabled=False,
        _metrics=defaultdict(lambda: defaultdict(list)),
    )


def trl_grpo(advantages, old, **options):
    from trl.trainer.grpo_trainer import GRPOTrainer

    logps = LOGPS.clone().requires_grad_(True)
    inputs = {
        "prompt_ids": torch.zeros(N, 1, dtype=torch.long),
        "prompt_mask": torch.ones(N, 1, dtype=torch.long),
        "completion_ids": torch.zeros(N, T, dtype=torch.long),
        "completion_mask": MASK,
        "advantages": advantages,
        "num_items_in_batch": MASK.sum(),
    }
    if old is not None:
        inputs["old_per_token_logps"] = old
    if options["beta"]:
        inputs["ref_per_token_logps"] = REF
    this = _grpo_trainer(logps, **options)
    loss = GRPOTrainer._compute_loss(this, None, inputs)
    (grad,) = torch.autograd.grad(loss, logps)
    metrics = {k: v[-1] for k, v in this._metrics["train"].items()}
    return float(loss.detach()), grad, metrics


def ours_grpo(advantages, old, **options):
    logps = LOGPS.clone().requires_grad_(True)
    loss_sum, count, metrics = clipped_policy_loss(
        logps,
        MASK,
        advantages,
        old_logps=old,
        ref_logps=REF,
        beta=options["beta"],
        epsilon=options["epsilon"],
        epsilon_high=options["epsilon_high"],
        delta=options["delta"],
        importance_sampling_level=options["level"],
        loss_type=options["loss_type"],
        max_completion_length=8,
        entropies=ENTROPIES,
    )
    loss = loss_sum / count
    (grad,) = torch.autograd.grad(loss, logps)
    return float(loss.detach()), grad, {k: s / n for k, (s, n) in metrics.items()}


CASES = [
    # loss_type, level, beta, epsilon, epsilon_high, delta
    ("grpo", "token", 0.0, 0.2, None, None),
    ("grpo", "token", 0.04, 0.2, 0.28, None),
    ("bnpo", "token", 0.1, 0.2, None, None),
    ("dr_grpo", "token", 0.04, 0.2, 0.28, None),
    ("dapo", "token", 0.0, 0.2, 0.28, None),
    ("dapo", "token", 0.04, 0.1, 0.3, 1.5),
    ("grpo", "token", 0.0, 0.2, None, 1.3),
    ("grpo", "sequence", 0.0, 3e-4, 4e-4, None),  # GSPO's own clip range
    ("grpo", "sequence", 0.04, 0.05, None, None),
    ("bnpo", "sequence", 0.0, 0.05, 0.1, None),
    ("dr_grpo", "sequence", 0.0, 0.05, None, None),
    ("dapo", "sequence", 0.04, 0.05, None, None),
]


@pytest.mark.parametrize("per_token", [False, True], ids=["seq-adv", "token-adv"])
@pytest.mark.parametrize("on_policy", [False, True], ids=["old", "on-policy"])
@pytest.mark.parametrize("loss_type, level, beta, epsilon, epsilon_high, delta", CASES)
def test_grpo_loss_matches_trl(
    loss_type, level, beta, epsilon, epsilon_high, delta, on_policy, per_token
):
    options = dict(
        loss_type=loss_type,
        level=level,
        beta=beta,
        epsilon=epsilon,
        epsilon_high=epsilon_high,
        delta=delta,
    )
    advantages = TOKEN_ADVANTAGES if per_token else ADVANTAGES
    old = None if on_policy else OLD
    theirs, their_grad, their_metrics = trl_grpo(advantages, old, **options)
    ours, our_grad, our_metrics = ours_grpo(advantages, old, **options)
    assert ours == pytest.approx(theirs, rel=1e-12, abs=1e-12)
    torch.testing.assert_close(our_grad, their_grad, rtol=1e-12, atol=1e-12)
    for name in ("kl", "entropy", "clip_ratio/low_mean", "clip_ratio/high_mean",
                 "clip_ratio/region_mean"):  # fmt: skip
        if name == "kl" and not beta:
            assert name not in our_metrics and name not in their_metrics
            continue
        # TRL counts in float32
        assert our_metrics[name] == pytest.approx(their_metrics[name], rel=1e-6), name
    if not on_policy and level == "token" and delta is None:  # both sides clip here
        assert their_metrics["clip_ratio/low_mean"] > 0
        assert their_metrics["clip_ratio/high_mean"] > 0


@pytest.mark.parametrize("epsilon_high", [None, 0.28])
@pytest.mark.parametrize("on_policy", [False, True], ids=["old", "on-policy"])
def test_rloo_loss_matches_trl(epsilon_high, on_policy):
    from trl.trainer.rloo_trainer import RLOOTrainer

    old = None if on_policy else LOGPS + (OLD - LOGPS) * 0.3  # sequence ratios near the clip
    logps = LOGPS.clone().requires_grad_(True)
    this = SimpleNamespace(
        _get_per_token_logps_and_entropies=lambda *a, **k: (logps, ENTROPIES, None),
        epsilon_low=0.2,
        epsilon_high=0.2 if epsilon_high is None else epsilon_high,
        model=SimpleNamespace(training=True),
        aux_loss_enabled=False,
        accelerator=Accelerator(),
        _metrics=defaultdict(lambda: defaultdict(list)),
    )
    inputs = {
        "prompt_ids": torch.zeros(N, 1, dtype=torch.long),
        "prompt_mask": torch.ones(N, 1, dtype=torch.long),
        "completion_ids": torch.zeros(N, T, dtype=torch.long),
        "completion_mask": MASK,
        "advantages": ADVANTAGES,
        "old_logps": ((LOGPS if old is None else old) * MASK).sum(1),
    }
    theirs = RLOOTrainer._compute_loss(this, None, inputs)
    (their_grad,) = torch.autograd.grad(theirs, logps)
    mine = LOGPS.clone().requires_grad_(True)
    loss_sum, count, metrics = rloo_policy_loss(
        mine, MASK, ADVANTAGES, old_logps=old, epsilon=0.2, epsilon_high=epsilon_high,
        entropies=ENTROPIES,
    )  # fmt: skip
    ours = loss_sum / count
    (our_grad,) = torch.autograd.grad(ours, mine)
    assert float(ours.detach()) == pytest.approx(float(theirs.detach()), rel=1e-12)
    torch.testing.assert_close(our_grad, their_grad, rtol=1e-12, atol=1e-12)
    for name in ("entropy", "clip_ratio/low_mean", "clip_ratio/high_mean",
                 "clip_ratio/region_mean"):  # fmt: skip
        s, n = metrics[name]
        assert s / n == pytest.approx(this._metrics["train"][name][-1], rel=1e-6), name


# ------------------------------------------------------------------ advantages, from TRL's source


def trl_lines(method, first: str, last: str) -> str:
    """The lines of ``method``'s source from the one starting with ``first`` to the next one
    starting with ``last`` (both included), dedented: TRL's own code, to run on our tensors."""
    lines = inspect.getsource(method).splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip().startswith(first))
        end = next(i for i in range(start, len(lines)) if lines[i].strip().startswith(last))
    except StopIteration:  # pragma: no cover - another TRL
        pytest.fail(f"TRL {trl.__version__}'s {method.__qualname__} no longer has {first!r}")
    return textwrap.dedent("\n".join(lines[start : end + 1]))


REWARDS = torch.tensor(
    [1.0, 0.0, 0.5, 1.0, 2.0, 2.0, 2.0, 2.0, -1.0, 3.0, 0.25, 0.0], dtype=torch.float64
)


@pytest.mark.parametrize("scale_rewards", ["group", "batch", "none"])
@pytest.mark.parametrize("group", [4, 2])
def test_grpo_advantages_match_trl(scale_rewards, group):
    from trl.trainer.grpo_trainer import GRPOTrainer
    from trl.trainer.utils import nanstd

    code = trl_lines(
        GRPOTrainer._generate_and_score_completions,
        "unscorable_mask = torch.isnan(rewards_per_func)",
        "advantages = torch.nan_to_num(advantages, nan=0.0)",
    )
    for rewards in (REWARDS, torch.where(torch.arange(12) == 3, torch.nan, REWARDS)):
        scope = {
            "torch": torch,
            "nanstd": nanstd,
            "device": "cpu",
            "num_generations": group,
            "rewards_per_func": rewards.unsqueeze(1).clone(),
            "self": SimpleNamespace(
                multi_objective_aggregation="sum_then_normalize",
                reward_weights=torch.ones(1, dtype=torch.float64),
                scale_rewards=scale_rewards,
            ),
        }
        exec(code, scope)
        ours = group_advantages(rewards, group, scale_rewards)
        torch.testing.assert_close(ours, scope["advantages"], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("beta", [0.0, 0.05])
def test_rloo_advantages_match_trl(normalize, beta):
    from martlet_align.online import Rloo
    from trl.trainer.rloo_trainer import RLOOTrainer
    from trl.trainer.utils import nanstd

    code = trl_lines(
        RLOOTrainer._generate_and_score_completions,
        "unscorable_mask = torch.isnan(rewards_per_func)",
        "advantages = torch.nan_to_num(advantages, nan=0.0)",
    )
    mask = torch.cat([MASK, MASK])
    old = torch.cat([LOGPS, OLD])
    ref = torch.cat([REF, LOGPS])
    scope = {
        "torch": torch,
        "nanstd": nanstd,
        "gather": lambda x: x,
        "device": "cpu",
        "num_generations": 3,
        "rewards_per_func": REWARDS.unsqueeze(1).clone(),
        "old_per_token_logps": old,
        "ref_per_token_logps": ref,
        "completion_mask": mask,
        "self": SimpleNamespace(
            reward_weights=torch.ones(1, dtype=torch.float64),
            reward_clip_range=None,
            beta=beta,
            normalize_advantages=normalize,
        ),
    }
    exec(code, scope)
    algo = Rloo(num_generations=3, beta=beta, normalize_advantages=normalize)
    out = algo.advantages(REWARDS, mask, old_logps=old, ref_logps=ref)
    torch.testing.assert_close(out.advantages, scope["advantages"], rtol=1e-12, atol=1e-12)
    if beta == 0:
        torch.testing.assert_close(rloo_advantages(REWARDS, 3, normalize), scope["advantages"])
