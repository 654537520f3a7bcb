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
