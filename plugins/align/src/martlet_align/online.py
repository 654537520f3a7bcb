r"""The objectives of online RL: GRPO (and DAPO, Dr. GRPO, GSPO), RLOO, REINFORCE++ and PPO.

Pure torch, no model and no trainer. Completions come in groups: ``B`` prompts times ``G``
generations, flattened to ``N = B * G`` rows with each prompt's completions consecutive (as
TRL lays them out). Per-token tensors are ``[N, T]`` over the completion tokens only, with a
``mask`` (1: a completion token, 0: padding).

Two layers:

- pure functions — advantage estimators (:func:`group_advantages`, :func:`rloo_advantages`,
  :func:`reinforce_pp_advantages`, :func:`gae`), the per-token reward of a sequence score
  with a KL penalty (:func:`token_rewards`), the k3 estimator (:func:`k3_kl`), the clipped
  policy objective (:func:`clipped_policy_loss`), RLOO's sequence-level one
  (:func:`rloo_policy_loss`) and PPO's value loss (:func:`value_loss`);
- one class per loss record (:class:`Grpo`, :class:`Rloo`, :class:`ReinforcePP`,
  :class:`Ppo`), each the record's options dataclass with the methods the trainer calls —
  the ``inputs="rollouts"`` contract (:class:`martlet.records.LossRecord`)::

      algo = record.load()(**options)          # validates the options (ConfigError)
      algo.group_size, algo.iterations         # G completions per prompt; passes per batch
      algo.generation                          # generate() keywords
      algo.uses_reference, algo.uses_old_logps, algo.uses_values
      out = algo.advantages(rewards, mask, old_logps=, ref_logps=, values=)  # once per batch
      loss_sum, count, metrics = algo.loss(logps, mask, out.advantages, old_logps=,
                                           ref_logps=, values=, old_values=, returns=,
                                           entropies=)  # per micro-batch, with gradients
      algo.units(mask) == count                # the loop's count(batch)

Every loss returns ``(loss_sum, count, metrics)`` as the training loop wants: the loop divides
the step's summed ``loss_sum`` by the step's summed ``count``, and for a single micro-batch
``loss_sum / count`` is exactly the loss TRL computes on the same tensors. Metrics are
``name -> (sum, n)`` pairs (logged as ``sum / n``) under TRL's names.

Sources: TRL 1.16 ``GRPOTrainer`` (``_generate_and_score_completions``' advantages,
``_compute_loss``) and ``RLOOTrainer``, checked on the same tensors in
``tests/test_online_against_trl.py``; ms-swift's GRPO arguments (``epsilon_high``, ``delta``,
``importance_sampling_level`` incl. ``sequence_token``, ``scale_rewards``, ``num_iterations``)
and its PPO's (TRL's ``PPOConfig``: ``kl_coef``, ``cliprange_value``, ``vf_coef``, ``gamma``,
``lam``, ``num_ppo_epochs``, ``whiten_rewards``); OpenRLHF's ``compute_advantages_and_returns``
for REINFORCE++ (``reinforce``, ``reinforce_baseline``). TRL 1.16 has no PPO and no
REINFORCE++: those follow TRL 0.x's ``PPOTrainer`` loop and OpenRLHF, checked by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from martlet_align.options import GrpoOptions, PpoOptions, ReinforcePPOptions, RlooOptions

Metrics = dict[str, tuple[float, float]]

#: what TRL adds to a standard deviation before dividing by it
STD_EPS = 1e-4


# --------------------------------------------------------------------------- helpers


def _nanstd(x: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Standard deviation ignoring NaNs, with Bessel's correction (TRL's ``nanstd``); NaN
    where fewer than two values count."""
    mean = torch.nanmean(x, dim=dim, keepdim=True)
    var = torch.nanmean((x - mean) ** 2, dim=dim, keepdim=True)
    n = (~torch.isnan(x)).sum(dim=dim, keepdim=True)
    correction = torch.where(n > 1, n / (n - 1), torch.full_like(var, float("nan")))
    std = torch.sqrt(var * correction)
    return std.squeeze(dim) if dim is not None else std.reshape(())


def _groups(rewards: torch.Tensor, num_generations: int) -> torch.Tensor:
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be 1-D (one per completion), got {tuple(rewards.shape)}")
    if num_generations < 1 or rewards.numel() % num_generations:
        raise ValueError(
            f"{rewards.numel()} rewards do not split into groups of {num_generations} "
            "(num_generations completions per prompt, each prompt's consecutive)"
        )
    return rewards.view(-1, num_generations)


def _tied(grouped: torch.Tensor) -> torch.Tensor:
    """``[N]``: True for each completion of a group whose (non-NaN) rewards are all equal —
    its advantage is exactly 0, whatever the rounding of the group mean."""
    nan = torch.isnan(grouped)
    high = torch.where(nan, torch.full_like(grouped, -torch.inf), grouped).amax(dim=1)
    low = torch.where(nan, torch.full_like(grouped, torch.inf), grouped).amin(dim=1)
    return (high <= low).repeat_interleave(grouped.shape[1])


def _mask(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    if mask.shape != like.shape:
        raise ValueError(f"mask has shape {tuple(mask.shape)}, the log-probs {tuple(like.shape)}")
    return mask.to(like.dtype)


def _pair(total: torch.Tensor, n: Any) -> tuple[float, float]:
    return float(total.detach()), float(n.detach() if isinstance(n, torch.Tensor) else n)


def _masked_sum_count(x: torch.Tensor, mask: torch.Tensor) -> tuple[float, float]:
    """``(sum, n)`` of ``x`` over the mask's tokens; ``[N, 1]`` (one per sequence): over rows."""
    if x.shape[-1] == 1 and mask.shape[-1] != 1:
        return _pair(x.sum(), x.shape[0])
    return _pair((x * mask).sum(), mask.sum())


def k3_kl(logps: torch.Tensor, ref_logps: torch.Tensor) -> torch.Tensor:
    r"""Per-token k3 estimate of KL(policy ‖ reference) (Schulman 2020, "Approximating KL
    divergence"; GRPO's, arXiv:2402.03300 Eq. 4):
    :math:`e^{r - p} - (r - p) - 1 \ge 0` with :math:`p` the policy's and :math:`r` the
    reference's log-prob of the sampled token. Its gradient in :math:`p` is
    :math:`1 - e^{r - p}`."""
    diff = ref_logps - logps
    return torch.exp(diff) - diff - 1


# --------------------------------------------------------------------------- advantages


def group_advantages(
    rewards: torch.Tensor, num_generations: int, scale_rewards: str = "group"
) -> torch.Tensor:
    r"""GRPO's group-relative advantages (arXiv:2402.03300 §4.1.2), as TRL's ``GRPOTrainer``
    computes them (``sum_then_normalize``): :math:`A_i = r_i - \text{mean}(r_{group})`,
    divided by the standard deviation plus 1e-4 — of the group (``"group"``), of the whole
    batch (``"batch"``, PPO-Lite arXiv:2508.08221) or not at all (``"none"``: Dr. GRPO,
    arXiv:2503.20783). Standard deviations use Bessel's correction. A NaN reward (an
    unscorable completion) is left out of its group's statistics and gets advantage 0.
    A group of equal rewards gets advantages exactly 0 (TRL's mean may round to 1e-16)."""
    if scale_rewards not in ("group", "batch", "none"):
        raise ValueError(f"scale_rewards must be group, batch or none, got {scale_rewards!r}")
    grouped = _groups(rewards, num_generations)
    mean = torch.nanmean(grouped, dim=1).repeat_interleave(num_generations)
    advantages = rewards - mean
    if scale_rewards == "group":
        if num_generations > 1:
            std = _nanstd(grouped, dim=1).repeat_interleave(num_generations)
        else:
            std = torch.zeros_like(rewards)
        advantages = advantages / (std + STD_EPS)
    elif scale_rewards == "batch":
        std = _nanstd(rewards) if rewards.numel() > 1 else torch.zeros((), dtype=rewards.dtype)
        advantages = advantages / (std + STD_EPS)
    advantages = torch.where(_tied(grouped), torch.zeros_like(advantages), advantages)
    return torch.nan_to_num(advantages, nan=0.0)


def rloo_advantages(
    rewards: torch.Tensor, num_generations: int, normalize: bool = False
) -> torch.Tensor:
    r"""REINFORCE Leave-One-Out (Kool et al. 2019; Ahmadian et al. 2024, arXiv:2402.14740):
    :math:`A_i = r_i - \frac{1}{G-1}\sum_{j \ne i} r_j`, the mean of the *other* completions
    of the same prompt (TRL's ``RLOOTrainer``; ms-swift's ``advantage_estimator rloo``, which
    writes it :math:`\frac{G}{G-1}(r_i - \bar r)`). ``normalize`` then whitens the advantages
    over the batch (mean 0, standard deviation 1, +1e-4; TRL's ``normalize_advantages``).
    NaN rewards drop out of their siblings' baselines and get advantage 0."""
    grouped = _groups(rewards, num_generations)
    if num_generations < 2:
        return torch.zeros_like(rewards)
    counts = (~torch.isnan(grouped)).sum(dim=1, keepdim=True)
    sums = torch.nansum(grouped, dim=1, keepdim=True)
    baselines = ((sums - grouped) / (counts - 1)).reshape(-1)
    advantages = torch.where(_tied(grouped), torch.zeros_like(rewards), rewards - baselines)
    if normalize:
        advantages = (advantages - torch.nanmean(advantages)) / (_nanstd(advantages) + STD_EPS)
    return torch.nan_to_num(advantages, nan=0.0)


def token_rewards(
    scores: torch.Tensor,
    mask: torch.Tensor,
    kl: torch.Tensor | None = None,
    kl_coef: float = 0.0,
) -> torch.Tensor:
    r"""Per-token rewards ``[N, T]`` of sequence scores ``[N]``: :math:`-\beta\,KL_t` at every
    completion token and the score added at the last one (OpenRLHF's ``compute_reward``; TRL's
    PPO adds the score at the sequence's end the same way). Zero outside the mask."""
    m = mask.to(scores.dtype) if scores.is_floating_point() else mask.float()
    rewards = torch.zeros_like(m)
    if kl is not None and kl_coef:
        rewards = -kl_coef * kl.to(m.dtype) * m
    lengths = mask.long().sum(1)
    last = (mask.shape[1] - 1 - mask.long().flip(1).argmax(1)).clamp(min=0)
    add = torch.where(lengths > 0, scores.to(m.dtype), torch.zeros_like(scores, dtype=m.dtype))
    return rewards.scatter_add(1, last.unsqueeze(1), add.unsqueeze(1))


def discounted_returns(rewards: torch.Tensor, mask: torch.Tensor, gamma: float) -> torch.Tensor:
    r""":math:`G_t = r_t + \gamma G_{t+1}` over the masked per-token rewards (OpenRLHF's
    ``get_cumulative_returns``)."""
    rewards = rewards * mask.to(rewards.dtype)
    returns = torch.zeros_like(rewards)
    running = torch.zeros(rewards.shape[0], dtype=rewards.dtype, device=rewards.device)
    for t in reversed(range(rewards.shape[1])):
        running = rewards[:, t] + gamma * running
        returns[:, t] = running
    return returns


def _global_whiten(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """OpenRLHF's whitening of advantages over every token of the batch: population
    variance, ``(x - mean) * rsqrt(max(var, 1e-8))``; zero outside the mask."""
    m = mask.to(x.dtype)
    n = m.sum().clamp(min=1)
    mean = (x * m).sum() / n
    var = (((x - mean) ** 2) * m).sum() / n
    return (x - mean) * var.clamp(min=1e-8).rsqrt() * m


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """TRL's ``masked_whiten``: mean and *unbiased* variance over the mask's tokens,
    ``(x - mean) * rsqrt(var + 1e-8)``; with ``shift_mean=False`` the mean is added back."""
    m = mask.to(x.dtype)
    n = m.sum()
    mean = (x * m).sum() / n
    var = (((x - mean) ** 2) * m).sum() / n
    if n > 1:
        var = var * n / (n - 1)
    whitened = (x - mean) * torch.rsqrt(var + 1e-8)
    return whitened if shift_mean else whitened + mean


def reinforce_pp_advantages(
    rewards: torch.Tensor,
    mask: torch.Tensor,
    *,
    num_generations: int | None = None,
    kl: torch.Tensor | None = None,
    beta: float = 0.0,
    gamma: float = 1.0,
) -> torch.Tensor:
    r"""REINFORCE++ (Hu 2025, arXiv:2501.03262) as OpenRLHF's ``compute_advantages_and_returns``
    defines it: the sequence reward at the last token and :math:`-\beta\,KL_t` (``kl``, per
    token: k1, the rollout policy's minus the reference's log-prob) at every token; the
    discounted return :math:`G_t` of those per-token rewards is the advantage, whitened over
    every completion token of the batch (global normalisation: population variance,
    ``rsqrt(max(var, 1e-8))``). With ``num_generations`` (REINFORCE++-baseline, OpenRLHF's
    ``reinforce_baseline``), each prompt's mean reward is subtracted first. Returns ``[N, T]``,
    0 outside the mask."""
    if num_generations is not None:
        grouped = _groups(rewards, num_generations)
        centred = (grouped - grouped.mean(dim=1, keepdim=True)).reshape(-1)
        rewards = torch.where(_tied(grouped), torch.zeros_like(centred), centred)
    per_token = token_rewards(rewards, mask, kl, beta)
    returns = discounted_returns(per_token, mask, gamma)
    return _global_whiten(returns, mask)


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    gamma: float = 1.0,
    lam: float = 0.95,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Generalized advantage estimation (Schulman et al. 2016, arXiv:1506.02438) over
    per-token rewards and values ``[N, T]``, as TRL's ``PPOTrainer`` loop computes it:
    :math:`\delta_t = r_t + \gamma V_{t+1} - V_t`, :math:`A_t = \delta_t + \gamma\lambda
    A_{t+1}` (:math:`V_T = 0`), rewards and values zeroed outside the mask first. Returns
    ``(advantages, returns)`` with returns :math:`A_t + V_t` (the value targets)."""
    m = mask.to(values.dtype)
    values = values * m
    rewards = rewards * m
    last = torch.zeros(values.shape[0], dtype=values.dtype, device=values.device)
    reversed_advantages = []
    length = rewards.shape[1]
    for t in reversed(range(length)):
        next_values = values[:, t + 1] if t < length - 1 else 0.0
        delta = rewards[:, t] + gamma * next_values - values[:, t]
        last = delta + gamma * lam * last
        reversed_advantages.append(last)
    advantages = torch.stack(reversed_advantages[::-1], dim=1)
    return advantages, advantages + values


# --------------------------------------------------------------------------- losses


def _aggregate(
    per_token: torch.Tensor, mask: torch.Tensor, loss_type: str, max_completion_length: Any
) -> tuple[torch.Tensor, Any]:
    """``(loss_sum, count)`` of a per-token loss under TRL's normalisation ``loss_type``."""
    per_token = per_token * mask
    if loss_type == "grpo":  # each sequence's token mean, averaged over sequences
        return (per_token.sum(-1) / mask.sum(-1).clamp(min=1.0)).sum(), mask.shape[0]
    if loss_type == "bnpo":  # token mean of the micro-batch
        return per_token.sum() / mask.sum().clamp(min=1.0), 1
    if loss_type == "dr_grpo":  # a constant: sequences x max_completion_length
        if not max_completion_length:
            raise ValueError("loss_type dr_grpo divides by max_completion_length: pass it")
        return per_token.sum() / max_completion_length, mask.shape[0]
    if loss_type == "dapo":  # token mean of the whole step (the loop sums the counts)
        return per_token.sum(), int(mask.sum().item())
    raise ValueError(f"loss_type must be one of {', '.join(LOSS_TYPES)}, got {loss_type!r}")


LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo")


def loss_units(mask: torch.Tensor, loss_type: str) -> int:
    """What :func:`clipped_policy_loss` counts for ``mask`` under ``loss_type``: sequences
    (``grpo``, ``dr_grpo``), the micro-batch (``bnpo``: 1) or completion tokens (``dapo``)."""
    if loss_type in ("grpo", "dr_grpo"):
        return int(mask.shape[0])
    if loss_type == "bnpo":
        return 1
    if loss_type == "dapo":
        return int(mask.sum().item())
    raise ValueError(f"loss_type must be one of {', '.join(LOSS_TYPES)}, got {loss_type!r}")


def _importance_weights(
    logps: torch.Tensor, old_logps: torch.Tensor | None, mask: torch.Tensor, level: str
) -> torch.Tensor:
    old = logps.detach() if old_logps is None else old_logps
    log_ratio = logps - old
    if level == "token":
        return torch.exp(log_ratio)
    sequence = ((log_ratio * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).unsqueeze(-1)
    if level == "sequence":
        return torch.exp(sequence)
    if level == "sequence_token":  # GSPO-token: the sequence's value, each token's gradient
        return torch.exp(logps - logps.detach() + sequence.detach())
    raise ValueError(
        f"importance_sampling_level must be token, sequence or sequence_token, got {level!r}"
    )


def clipped_policy_loss(
    logps: torch.Tensor,
    mask: torch.Tensor,
    advantages: torch.Tensor,
    *,
    old_logps: torch.Tensor | None = None,
    ref_logps: torch.Tensor | None = None,
    beta: float = 0.0,
    epsilon: float = 0.2,
    epsilon_high: float | None = None,
    delta: float | None = None,
    importance_sampling_level: str = "token",
    loss_type: str = "grpo",
    max_completion_length: int | None = None,
    entropies: torch.Tensor | None = None,
) -> tuple[torch.Tensor, Any, Metrics]:
    r"""The clipped surrogate of PPO/GRPO with TRL ``GRPOTrainer._compute_loss``'s options.

    ``logps`` ``[N, T]``: the policy's per-token log-probs of the sampled completions (with
    gradients); ``old_logps``: the sampling policy's (None: ``logps.detach()``, ratio 1 with
    its gradient — one iteration per generation batch); ``advantages`` ``[N]`` or ``[N, T]``.
    The ratio :math:`\rho` is per token (``"token"``), one per sequence from the mean token
    log-ratio (``"sequence"``: GSPO, arXiv:2507.18071) or the sequence's value with per-token
    gradients (``"sequence_token"``: GSPO-token, ms-swift). Per token:
    :math:`-\min(\rho A, \text{clip}(\rho, 1-\epsilon, 1+\epsilon_{high}) A)`, with
    :math:`\rho` first capped at ``delta`` in the unclipped term where given (two-sided
    clipping, INTELLECT-2 arXiv:2505.07291), plus :math:`\beta` times the k3 KL to the
    reference (``ref_logps``; none at ``beta`` 0). ``loss_type`` aggregates as TRL:
    ``grpo`` (per-sequence token mean, then mean), ``bnpo`` (token mean of the micro-batch),
    ``dr_grpo`` (sum over ``N * max_completion_length``), ``dapo`` (token mean of the step).

    Returns ``(loss_sum, count, metrics)`` (``loss_sum / count`` = TRL's loss on one batch);
    metrics: ``kl`` (with ``beta``), ``entropy`` (with ``entropies``),
    ``clip_ratio/low_mean`` (ratio below :math:`1-\epsilon` with :math:`A<0`),
    ``clip_ratio/high_mean`` (above :math:`1+\epsilon_{high}` with :math:`A>0`) and
    ``clip_ratio/region_mean``, token means as ``(sum, n)``.
    """
    mask = _mask(mask, logps)
    epsilon_high = epsilon if epsilon_high is None else epsilon_high
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(1)
    advantages = advantages.to(logps.dtype)
    coef_1 = _importance_weights(logps, old_logps, mask, importance_sampling_level)
    coef_2 = torch.clamp(coef_1, 1 - epsilon, 1 + epsilon_high)
    if delta is not None:
        coef_1 = torch.clamp(coef_1, max=delta)
    per_token = -torch.min(coef_1 * advantages, coef_2 * advantages)
    metrics: Metrics = {}
    if beta != 0.0:
        if ref_logps is None:
            raise ValueError(f"beta is {beta}: pass the reference's per-token ref_logps")
        kl = k3_kl(logps, ref_logps)
        per_token = per_token + beta * kl
        metrics["kl"] = _masked_sum_count(kl, mask)
    loss_sum, count = _aggregate(per_token, mask, loss_type, max_completion_length)
    if entropies is not None:
        metrics["entropy"] = _masked_sum_count(entropies, mask)
    low = ((coef_1 < 1 - epsilon) & (advantages < 0)).to(logps.dtype)
    high = ((coef_1 > 1 + epsilon_high) & (advantages > 0)).to(logps.dtype)
    metrics["clip_ratio/low_mean"] = _masked_sum_count(low, mask)
    metrics["clip_ratio/high_mean"] = _masked_sum_count(high, mask)
    metrics["clip_ratio/region_mean"] = _masked_sum_count(torch.maximum(low, high), mask)
    return loss_sum, count, metrics


def rloo_policy_loss(
    logps: torch.Tensor,
    mask: torch.Tensor,
    advantages: torch.Tensor,
    *,
    old_logps: torch.Tensor | None = None,
    epsilon: float = 0.2,
    epsilon_high: float | None = None,
    entropies: torch.Tensor | None = None,
) -> tuple[torch.Tensor, Any, Metrics]:
    r"""TRL ``RLOOTrainer._compute_loss``: one ratio per sequence from its *summed* log-probs,
    :math:`\rho = \exp(\sum_t p_t - \sum_t p^{old}_t)`, the clipped surrogate
    :math:`-\min(\rho A, \text{clip}(\rho, 1-\epsilon, 1+\epsilon_{high}) A)` per sequence,
    averaged over sequences (``count`` = N). Metrics as :func:`clipped_policy_loss` (over
    sequences)."""
    mask = _mask(mask, logps)
    epsilon_high = epsilon if epsilon_high is None else epsilon_high
    sequence = (logps * mask).sum(1)
    old = sequence.detach() if old_logps is None else (old_logps * mask).sum(1)
    advantages = advantages.to(logps.dtype)
    if advantages.dim() != 1:
        raise ValueError("RLOO's advantages are one per sequence ([N])")
    coef_1 = torch.exp(sequence - old)
    coef_2 = torch.clamp(coef_1, 1 - epsilon, 1 + epsilon_high)
    per_sequence = -torch.min(coef_1 * advantages, coef_2 * advantages)
    n = mask.shape[0]
    low = ((coef_1 < 1 - epsilon) & (advantages < 0)).to(logps.dtype)
    high = ((coef_1 > 1 + epsilon_high) & (advantages > 0)).to(logps.dtype)
    metrics: Metrics = {
        "clip_ratio/low_mean": _pair(low.sum(), n),
        "clip_ratio/high_mean": _pair(high.sum(), n),
        "clip_ratio/region_mean": _pair(torch.maximum(low, high).sum(), n),
    }
    if entropies is not None:
        metrics["entropy"] = _masked_sum_count(entropies, mask)
    return per_sequence.sum(), n, metrics


def value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    cliprange_value: float = 0.2,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""PPO's clipped value loss per token (TRL ``PPOTrainer``; OpenRLHF ``ValueLoss``):
    :math:`\frac12\max((V - R)^2, (\text{clip}(V, V_{old} \pm c) - R)^2)`, zero outside the
    mask. Returns ``(per_token_loss, clipped)`` where ``clipped`` marks the tokens whose
    clipped term was the larger (TRL's ``vf_clipfrac``)."""
    m = mask.to(values.dtype)
    clipped_values = torch.clamp(values, old_values - cliprange_value, old_values + cliprange_value)
    unclipped = (values - returns) ** 2
    clipped = (clipped_values - returns) ** 2
    return 0.5 * torch.max(unclipped, clipped) * m, (clipped > unclipped).to(values.dtype)


# --------------------------------------------------------------------------- the contract


@dataclass
class RolloutAdvantages:
    """What :meth:`advantages` returns for one generation batch: ``advantages`` (``[N]`` or
    ``[N, T]``, detached), ``returns`` (PPO's value targets ``[N, T]``; else None) and
    ``metrics`` (name -> float over the whole batch: ``reward``, ``reward_std``,
    ``frac_reward_zero_std``, ``completions/mean_length``, ...)."""

    advantages: torch.Tensor
    returns: torch.Tensor | None = None
    metrics: dict[str, float] = field(default_factory=dict)


def _reward_metrics(rewards: torch.Tensor, mask: torch.Tensor, group: int) -> dict[str, float]:
    lengths = mask.to(torch.float64).sum(1)
    out = {
        "reward": float(torch.nanmean(rewards.double())),
        "reward_std": float(_nanstd(rewards.double())) if rewards.numel() > 1 else 0.0,
        "completions/mean_length": float(lengths.mean()),
        "completions/min_length": float(lengths.min()),
        "completions/max_length": float(lengths.max()),
    }
    if group > 1 and rewards.numel() % group == 0:
        std = _nanstd(rewards.double().view(-1, group), dim=1)
        zero = torch.isclose(std, torch.zeros_like(std)) | torch.isnan(std)
        out["frac_reward_zero_std"] = float(zero.double().mean())
    return out


class _Rollouts:
    """The methods every ``inputs="rollouts"`` loss has (mixed into its options dataclass)."""

    group_size: int = 1
    uses_values: bool = False

    @property
    def iterations(self) -> int:
        return int(self.num_iterations)  # type: ignore[attr-defined]

    @property
    def uses_reference(self) -> bool:
        return self._kl_coef != 0.0

    @property
    def uses_old_logps(self) -> bool:
        return self.iterations > 1

    @property
    def _kl_coef(self) -> float:
        return float(self.beta)  # type: ignore[attr-defined]

    @property
    def generation(self) -> dict[str, Any]:
        """Keywords of a sampling ``generate()`` (transformers'), one completion per input row:
        the trainer repeats each prompt ``group_size`` times, the copies consecutive."""
        return {
            "do_sample": True,
            "max_new_tokens": int(self.max_completion_length),  # type: ignore[attr-defined]
            "temperature": float(self.temperature),  # type: ignore[attr-defined]
            "top_p": float(self.top_p),  # type: ignore[attr-defined]
            "top_k": int(self.top_k),  # type: ignore[attr-defined]
        }

    def _sequence_kl(self, mask: torch.Tensor, old_logps: Any, ref_logps: Any) -> Any:
        """Per-token k1 KL of the sampling policy to the reference, for a KL in the reward."""
        if not self.uses_reference:
            return None
        if old_logps is None or ref_logps is None:
            raise ValueError(
                f"{type(self).__name__} puts beta * KL in the reward: pass old_logps and ref_logps"
            )
        return (old_logps - ref_logps).detach() * mask.to(old_logps.dtype)


class Grpo(GrpoOptions, _Rollouts):
    """GRPO and its variants (DAPO, Dr. GRPO, GSPO): group-normalised advantages and the
    clipped token-level objective with a k3 KL to the reference. See :func:`group_advantages`
    and :func:`clipped_policy_loss`."""

    @property
    def group_size(self) -> int:  # type: ignore[override]
        return int(self.num_generations)

    def advantages(
        self,
        rewards: torch.Tensor,
        mask: torch.Tensor,
        *,
        old_logps: torch.Tensor | None = None,
        ref_logps: torch.Tensor | None = None,
        values: torch.Tensor | None = None,
    ) -> RolloutAdvantages:
        advantages = group_advantages(rewards, self.num_generations, self.scale_rewards)
        return RolloutAdvantages(
            advantages.detach(), metrics=_reward_metrics(rewards, mask, self.num_generations)
        )

    def units(self, mask: torch.Tensor) -> int:
        return loss_units(mask, self.loss_type)

    def loss(
        self,
        logps: torch.Tensor,
        mask: torch.Tensor,
        advantages: torch.Tensor,
        *,
        old_logps: torch.Tensor | None = None,
        ref_logps: torch.Tensor | None = None,
        values: torch.Tensor | None = None,
        old_values: torch.Tensor | None = None,
        returns: torch.Tensor | None = None,
        entropies: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, Any, Metrics]:
        return clipped_policy_loss(
            logps,
            mask,
            advantages,
            old_logps=old_logps,
            ref_logps=ref_logps,
            beta=self.beta,
            epsilon=self.epsilon,
            epsilon_high=self.epsilon_high,
            delta=self.delta,
            importance_sampling_level=self.importance_sampling_level,
            loss_type=self.loss_type,
            max_completion_length=self.max_completion_length,
            entropies=entropies,
        )


class Rloo(RlooOptions, _Rollouts):
    """RLOO as TRL's ``RLOOTrainer``: :math:`\\beta` times the sequence's k1 KL (sampling
    policy to reference) subtracted from its reward, leave-one-out advantages
    (:func:`rloo_advantages`) and the sequence-level clipped objective
    (:func:`rloo_policy_loss`)."""

    @property
    def group_size(self) -> int:  # type: ignore[override]
        return int(self.num_generations)

    @property
    def uses_old_logps(self) -> bool:  # the KL in the reward is the sampling policy's
        return self.iterations > 1 or self.uses_reference

    def advantages(
        self,
        rewards: torch.Tensor,
        mask: torch.Tensor,
        *,
        old_logps: torch.Tensor | None = None,
        ref_logps: torch.Tensor | None = None,
        values: torch.Tensor | None = None,
    ) -> RolloutAdvantages:
        metrics = _reward_metrics(rewards, mask, self.num_generations)
        kl = self._sequence_kl(mask, old_logps, ref_logps)
        if kl is not None:
            sequence_kl = kl.sum(-1)
            rewards = rewards - self.beta * sequence_kl.to(rewards.dtype)
            metrics["kl"] = float(sequence_kl.sum() / mask.sum().clamp(min=1))
        advantages = rloo_advantages(rewards, self.num_generations, self.normalize_advantages)
        return RolloutAdvantages(advantages.detach(), metrics=metrics)

    def units(self, mask: torch.Tensor) -> int:
        return int(mask.shape[0])

    def loss(
        self,
        logps: torch.Tensor,
        mask: torch.Tensor,
        advantages: torch.Tensor,
        *,
        old_logps: torch.Tensor | None = None,
        ref_logps: torch.Tensor | None = None,
        values: torch.Tensor | None = None,
        old_values: torch.Tensor | None = None,
        returns: torch.Tensor | None = None,
        entropies: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, Any, Metrics]:
        return rloo_policy_loss(
            logps,
            mask,
            advantages,
            old_logps=old_logps,
            epsilon=self.epsilon,
            epsilon_high=self.epsilon_high,
            entropies=entropies,
        )


class ReinforcePP(ReinforcePPOptions, _Rollouts):
    """REINFORCE++ (and REINFORCE++-baseline) as OpenRLHF defines it: per-token returns of
    the reward with :math:`-\\beta\\,KL_t` at every token, whitened over the batch
    (:func:`reinforce_pp_advantages`), and the clipped token-level objective
    (:func:`clipped_policy_loss`, no KL term: it is in the reward)."""

    @property
    def group_size(self) -> int:  # type: ignore[override]
        return int(self.num_generations)

    @property
    def uses_old_logps(self) -> bool:
        return self.iterations > 1 or self.uses_reference

    def advantages(
        self,
        rewards: torch.Tensor,
        mask: torch.Tensor,
        *,
        old_logps: torch.Tensor | None = None,
        ref_logps: torch.Tensor | None = None,
        values: torch.Tensor | None = None,
    ) -> RolloutAdvantages:
        metrics = _reward_metrics(rewards, mask, self.num_generations)
        kl = self._sequence_kl(mask, old_logps, ref_logps)
        if kl is not None:
            metrics["kl"] = float(kl.sum() / mask.sum().clamp(min=1))
        baseline = self.advantage_estimator == "reinforce_baseline"
        advantages = reinforce_pp_advantages(
            rewards,
            mask,
            num_generations=self.num_generations if baseline else None,
            kl=kl,
            beta=self.beta,
            gamma=self.gamma,
        )
        return RolloutAdvantages(advantages.detach(), metrics=metrics)

    def units(self, mask: torch.Tensor) -> int:
        return loss_units(mask, self.loss_type)

    def loss(
        self,
        logps: torch.Tensor,
        mask: torch.Tensor,
        advantages: torch.Tensor,
        *,
        old_logps: torch.Tensor | None = None,
        ref_logps: torch.Tensor | None = None,
        values: torch.Tensor | None = None,
        old_values: torch.Tensor | None = None,
        returns: torch.Tensor | None = None,
        entropies: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, Any, Metrics]:
        return clipped_policy_loss(
            logps,
            mask,
            advantages,
            old_logps=old_logps,
            epsilon=self.epsilon,
            epsilon_high=self.epsilon_high,
            loss_type=self.loss_type,
            max_completion_length=self.max_completion_length,
            entropies=entropies,
        )


class Ppo(PpoOptions, _Rollouts):
    """PPO with a value head (Ouyang et al. 2022; TRL's ``PPOTrainer``): per-token rewards
    (the score at the last token, :math:`-\\beta_{kl}\\,KL_t` at each, k1), GAE advantages
    whitened over the batch, the clipped token-level surrogate and a clipped value loss
    (:func:`value_loss`) weighted by ``vf_coef``. One completion per prompt."""

    group_size = 1
    uses_values = True

    @property
    def _kl_coef(self) -> float:
        return float(self.kl_coef)

    @property
    def uses_old_logps(self) -> bool:
        return True  # the ratio over num_iterations epochs, and the KL in the reward

    def advantages(
        self,
        rewards: torch.Tensor,
        mask: torch.Tensor,
        *,
        old_logps: torch.Tensor | None = None,
        ref_logps: torch.Tensor | None = None,
        values: torch.Tensor | None = None,
    ) -> RolloutAdvantages:
        if values is None:
            raise ValueError("PPO's advantages need the value head's per-token values")
        metrics = _reward_metrics(rewards, mask, 1)
        kl = self._sequence_kl(mask, old_logps, ref_logps)
        if kl is not None:
            metrics["kl"] = float(kl.sum() / mask.sum().clamp(min=1))
        per_token = token_rewards(rewards.to(values.dtype), mask, kl, self.kl_coef)
        if self.whiten_rewards:
            per_token = masked_whiten(per_token, mask, shift_mean=False) * mask.to(values.dtype)
        advantages, returns = gae(per_token, values.detach(), mask, self.gamma, self.lam)
        advantages = masked_whiten(advantages, mask) * mask.to(values.dtype)
        return RolloutAdvantages(advantages.detach(), returns.detach(), metrics)

    def units(self, mask: torch.Tensor) -> int:
        return int(mask.sum().item())

    def loss(
        self,
        logps: torch.Tensor,
        mask: torch.Tensor,
        advantages: torch.Tensor,
        *,
        old_logps: torch.Tensor | None = None,
        ref_logps: torch.Tensor | None = None,
        values: torch.Tensor | None = None,
        old_values: torch.Tensor | None = None,
        returns: torch.Tensor | None = None,
        entropies: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, Any, Metrics]:
        r"""Token sum of :math:`\ell^{clip}_t + c_v \ell^V_t` over the completion tokens
        (``count``: those tokens; ``loss_sum / count`` is TRL's ``pg_loss + vf_coef *
        vf_loss`` on one batch)."""
        if values is None or old_values is None or returns is None:
            raise ValueError("PPO's loss needs values (current), old_values and returns")
        policy_sum, count, metrics = clipped_policy_loss(
            logps,
            mask,
            advantages,
            old_logps=old_logps,
            epsilon=self.epsilon,
            epsilon_high=self.epsilon_high,
            loss_type="dapo",
            entropies=entropies,
        )
        per_token_value, clipped = value_loss(
            values, old_values, returns, mask, self.cliprange_value
        )
        value_sum = per_token_value.sum()
        m = mask.to(values.dtype)
        metrics["policy_loss"] = _pair(policy_sum, count)
        metrics["value_loss"] = _pair(value_sum, count)
        metrics["value_clip_ratio"] = _pair((clipped * m).sum(), count)
        return policy_sum + self.vf_coef * value_sum, count, metrics
