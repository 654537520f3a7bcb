"""Each loss's options, one dataclass per loss record (``options=`` in :mod:`.plugin`).

``martlet rlhf --method NAME`` takes the selected loss's options (``martlet rlhf --method simpo
--help`` lists them) and passes exactly these to the loss function as keyword arguments: each
field is a keyword of the function, with the function's default. Names follow ms-swift/TRL.

No torch import here: the CLI reads these classes to parse and show options.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from martlet.config import option, require


def _beta(default: float, what: str):
    return option(default, help=f"Strength of the preference term ({what}).")


def _smoothing():
    return option(0.0, help="Assumed label noise: the fraction of pairs taken as flipped.")


def _positive(value: float, flag: str, example: str) -> None:
    require(value > 0, flag, value, "more than 0", example)


def _fraction(value: float, flag: str) -> None:
    require(0 <= value < 0.5, flag, value, "in [0, 0.5)", "0.1")


@dataclass(kw_only=True)
class DpoOptions:
    """DPO: direct preference optimization and its variants"""

    beta: float = _beta(0.1, "DPO's beta")
    loss_type: list[str] = option(
        default_factory=lambda: ["sigmoid"],
        help="Loss variant(s): sigmoid, hinge, ipo, robust, exo_pair, nca_pair, bco_pair, "
        "sppo_hard, apo_zero, apo_down; several are summed with --loss-weights.",
    )
    loss_weights: list[float] | None = option(
        None, help="Weights of the --loss-type terms (default: 1 each)."
    )
    label_smoothing: float = _smoothing()
    rpo_alpha: float | None = option(None, help="Add this times the chosen response's NLL (RPO).")
    bco_delta: float | None = option(
        None, help="bco_pair: the reward shift (default: a running mean of the rewards)."
    )

    def __post_init__(self) -> None:
        _positive(self.beta, "beta", "0.1")
        _fraction(self.label_smoothing, "label-smoothing")
        if self.loss_weights is not None and len(self.loss_weights) != len(self.loss_type):
            require(
                False,
                "loss-weights",
                self.loss_weights,
                f"one weight per --loss-type ({len(self.loss_type)})",
                " ".join(["1"] * len(self.loss_type)),
            )


@dataclass(kw_only=True)
class SimpoOptions:
    """SimPO: reference-free preference loss with a target margin"""

    beta: float = _beta(2.0, "SimPO's beta")
    simpo_gamma: float = option(1.0, help="The target reward margin.")
    label_smoothing: float = _smoothing()

    def __post_init__(self) -> None:
        _positive(self.beta, "beta", "2.0")
        _fraction(self.label_smoothing, "label-smoothing")


@dataclass(kw_only=True)
class CpoOptions:
    """CPO: contrastive preference optimization"""

    beta: float = _beta(0.1, "CPO's beta")
    loss_type: Literal["sigmoid", "hinge"] = option("sigmoid", help="The preference term.")
    label_smoothing: float = _smoothing()
    cpo_alpha: float = option(1.0, help="Weight of the chosen response's NLL.")

    def __post_init__(self) -> None:
        _positive(self.beta, "beta", "0.1")
        _fraction(self.label_smoothing, "label-smoothing")


@dataclass(kw_only=True)
class OrpoOptions:
    """ORPO: NLL plus an odds-ratio preference term"""

    beta: float = _beta(0.1, "ORPO's lambda: the odds-ratio term's weight")

    def __post_init__(self) -> None:
        _positive(self.beta, "beta", "0.1")


@dataclass(kw_only=True)
class KtoOptions:
    """KTO: Kahneman-Tversky optimization"""

    beta: float = _beta(0.1, "KTO's beta")
    desirable_weight: float = option(1.0, help="Weight of the desirable rows' term.")
    undesirable_weight: float = option(1.0, help="Weight of the undesirable rows' term.")

    def __post_init__(self) -> None:
        _positive(self.beta, "beta", "0.1")
        _positive(self.desirable_weight, "desirable-weight", "1.0")
        _positive(self.undesirable_weight, "undesirable-weight", "1.0")


@dataclass(kw_only=True)
class RewardOptions:
    """Reward model: Bradley-Terry loss on chosen and rejected scores"""

    center_rewards_coefficient: float | None = option(
        None, help="Penalise (chosen + rejected)² by this to keep the scores centred on 0."
    )


@dataclass(kw_only=True)
class GkdOptions:
    """GKD: generalized knowledge distillation"""

    beta: float = option(
        0.5,
        help="The generalized Jensen-Shannon interpolation (0: KL(teacher||student), "
        "1: KL(student||teacher)).",
        aliases=("gkd_beta",),
    )
    temperature: float = option(
        0.9, help="Sampling and distillation temperature (the logits are divided by it)."
    )

    def __post_init__(self) -> None:
        require(0 <= self.beta <= 1, "beta", self.beta, "between 0 and 1", "0.5")
        require(
            self.temperature > 0,
            "temperature",
            self.temperature,
            "more than 0",
            "0.9",
            why="the logits are divided by it",
        )


# --------------------------------------------------------------------------- online RL

GRPO_LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo")
IMPORTANCE_SAMPLING_LEVELS = ("token", "sequence", "sequence_token")
SCALE_REWARDS = ("group", "batch", "none")


def _choice(value: str, flag: str, choices: tuple[str, ...]) -> None:
    require(value in choices, flag, value, f"one of {', '.join(choices)}", choices[0])


def _group(num_generations: int, what: str) -> None:
    require(
        num_generations >= 2,
        "num-generations",
        num_generations,
        "at least 2",
        "8",
        why=f"{what} compares the completions of one prompt with each other",
    )


@dataclass(kw_only=True)
class RolloutOptions:
    """Online RL: sampling the completions and the clipped policy update

    Shared by the online objectives (grpo, rloo, reinforce_pp, ppo); names as ms-swift/TRL.
    """

    max_completion_length: int = option(
        512, help="Most tokens generated per completion.", aliases=("max_new_tokens",)
    )
    temperature: float = option(1.0, help="Sampling temperature of the completions.")
    top_p: float = option(1.0, help="Nucleus sampling: keep the smallest top set of this mass.")
    top_k: int = option(0, help="Sample among the k likeliest tokens only (0: off).")
    num_iterations: int = option(
        1,
        help="Optimisation passes over each generation batch (mu in the GRPO paper; "
        "PPO's epochs). Above 1 the ratio to the sampling policy is clipped.",
        aliases=("num_ppo_epochs",),
    )
    epsilon: float = option(
        0.2,
        help="Clip the probability ratio to [1 - epsilon, 1 + epsilon_high].",
        aliases=("cliprange",),
    )
    epsilon_high: float | None = option(
        None, help="Upper clip of the ratio (DAPO's clip-higher, e.g. 0.28; default: --epsilon)."
    )

    def __post_init__(self) -> None:
        require(
            self.max_completion_length >= 1,
            "max-completion-length",
            self.max_completion_length,
            "at least 1",
            "512",
        )
        require(
            self.temperature > 0,
            "temperature",
            self.temperature,
            "more than 0",
            "1.0",
            why="online RL samples its completions",
        )
        require(0 < self.top_p <= 1, "top-p", self.top_p, "in (0, 1]", "1.0")
        require(self.top_k >= 0, "top-k", self.top_k, "0 (off) or more", "0")
        require(self.num_iterations >= 1, "num-iterations", self.num_iterations, "at least 1", "1")
        require(0 < self.epsilon < 1, "epsilon", self.epsilon, "in (0, 1)", "0.2")
        if self.epsilon_high is not None:
            require(self.epsilon_high > 0, "epsilon-high", self.epsilon_high, "more than 0", "0.28")


@dataclass(kw_only=True)
class GrpoOptions(RolloutOptions):
    """GRPO: group relative policy optimization (with the DAPO, Dr GRPO and GSPO variants)"""

    num_generations: int = option(8, help="Completions sampled per prompt (the group size).")
    beta: float = option(
        0.04,
        help="Weight of the k3 KL to the reference model (0: no reference model is loaded).",
    )
    loss_type: Literal["grpo", "bnpo", "dr_grpo", "dapo"] = option(
        "grpo",
        help="How token losses are averaged: grpo (per completion, then over completions), "
        "bnpo (over the micro-batch's tokens), dr_grpo (over completions x "
        "max_completion_length), dapo (over the step's tokens).",
    )
    scale_rewards: Literal["group", "batch", "none"] = option(
        "group",
        help="Divide the advantages by the reward std of the group, of the batch, or not "
        "(none: Dr. GRPO).",
    )
    importance_sampling_level: Literal["token", "sequence", "sequence_token"] = option(
        "token",
        help="The importance ratio per token, or per sequence from its mean token log-ratio "
        "(sequence: GSPO; sequence_token: GSPO-token).",
    )
    delta: float | None = option(
        None, help="Two-sided clipping: cap the unclipped ratio at this (INTELLECT-2; > 1 + eps)."
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        _group(self.num_generations, "GRPO")
        require(self.beta >= 0, "beta", self.beta, "0 or more", "0.04")
        _choice(self.loss_type, "loss-type", GRPO_LOSS_TYPES)
        _choice(self.scale_rewards, "scale-rewards", SCALE_REWARDS)
        _choice(
            self.importance_sampling_level, "importance-sampling-level", IMPORTANCE_SAMPLING_LEVELS
        )
        if self.delta is not None:
            require(
                self.delta > 1 + self.epsilon,
                "delta",
                self.delta,
                f"more than 1 + --epsilon ({1 + self.epsilon:g})",
                "1.5",
            )


@dataclass(kw_only=True)
class RlooOptions(RolloutOptions):
    """RLOO: REINFORCE with the leave-one-out baseline"""

    num_generations: int = option(8, help="Completions sampled per prompt (the group size).")
    beta: float = option(
        0.05,
        help="Subtract this times the completion's KL to the reference from its reward "
        "(0: no reference model is loaded).",
    )
    normalize_advantages: bool = option(
        False, help="Whiten the advantages over the generation batch."
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        _group(self.num_generations, "RLOO's leave-one-out baseline")
        require(self.beta >= 0, "beta", self.beta, "0 or more", "0.05")


@dataclass(kw_only=True)
class ReinforcePPOptions(RolloutOptions):
    """REINFORCE++: per-token returns with the KL in the reward, normalised over the batch"""

    num_generations: int = option(
        8, help="Completions sampled per prompt (at least 2 for reinforce_baseline)."
    )
    beta: float = option(
        0.01,
        help="Per-token KL penalty in the reward (0: no reference model is loaded).",
        aliases=("init_kl_coef",),
    )
    advantage_estimator: Literal["reinforce_baseline", "reinforce"] = option(
        "reinforce_baseline",
        help="reinforce_baseline subtracts each prompt's mean reward first (REINFORCE++-"
        "baseline); reinforce uses the rewards as they are.",
    )
    gamma: float = option(1.0, help="Discount of the per-token returns.")
    loss_type: Literal["grpo", "bnpo", "dr_grpo", "dapo"] = option(
        "grpo", help="How token losses are averaged (as GRPO's --loss-type)."
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        _choice(
            self.advantage_estimator, "advantage-estimator", ("reinforce_baseline", "reinforce")
        )
        if self.advantage_estimator == "reinforce_baseline":
            _group(self.num_generations, "reinforce_baseline")
            require(
                self.gamma == 1.0,
                "gamma",
                self.gamma,
                "1.0 with reinforce_baseline",
                "1.0",
                why="the group baseline is of undiscounted rewards (OpenRLHF)",
            )
        require(
            self.num_generations >= 1, "num-generations", self.num_generations, "at least 1", "8"
        )
        require(self.beta >= 0, "beta", self.beta, "0 or more", "0.01")
        require(0 < self.gamma <= 1, "gamma", self.gamma, "in (0, 1]", "1.0")
        _choice(self.loss_type, "loss-type", GRPO_LOSS_TYPES)


@dataclass(kw_only=True)
class PpoOptions(RolloutOptions):
    """PPO: a value head, GAE and clipped policy and value losses"""

    num_iterations: int = option(
        4, help="PPO epochs over each generation batch.", aliases=("num_ppo_epochs",)
    )
    kl_coef: float = option(
        0.05,
        help="Per-token KL penalty in the reward (0: no reference model is loaded).",
    )
    gamma: float = option(1.0, help="Discount factor of GAE.")
    lam: float = option(0.95, help="Lambda of GAE (bias/variance trade-off).")
    cliprange_value: float = option(
        0.2, help="Clip the value predictions to the rollout's values plus or minus this."
    )
    vf_coef: float = option(0.1, help="Weight of the value loss.")
    whiten_rewards: bool = option(False, help="Whiten the per-token rewards before GAE.")

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.kl_coef >= 0, "kl-coef", self.kl_coef, "0 or more", "0.05")
        require(0 < self.gamma <= 1, "gamma", self.gamma, "in (0, 1]", "1.0")
        require(0 <= self.lam <= 1, "lam", self.lam, "in [0, 1]", "0.95")
        require(
            self.cliprange_value > 0, "cliprange-value", self.cliprange_value, "more than 0", "0.2"
        )
        require(self.vf_coef >= 0, "vf-coef", self.vf_coef, "0 or more", "0.1")
