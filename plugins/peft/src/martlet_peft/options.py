"""The tuners' options: each tuner's own settings, one dataclass per tuner as PEFT gives
each method its own config (:class:`LoraOptions`, :class:`BoftOptions`, ...). Each tuner record
names its class (``options=``), so ``martlet sft --tuner boft`` takes ``--boft-block-size`` and
refuses ``--lora-rank`` (:mod:`martlet.compose`); the values are checked here, from flags, YAML
and the Python API alike. Names follow ms-swift where it has one.

:class:`TunerOptions` still holds every tuner's options in one class, for calling a tuner's
``prepare`` from Python with one object (as before the split), and :class:`TunerChoice` (the
``tuner`` selector and the model's head) for a command of your own. Every tuner here takes
:class:`NeftuneOptions`.

No torch or peft import here: the CLI reads these classes to parse and show options.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from martlet.config import option, require

from martlet_peft.base import check_task_type


def _targets():
    return option(
        default_factory=lambda: ["all-linear"],
        help="Module names to adapt (suffixes such as q_proj v_proj), or all-linear.",
    )


def _at_least(value: int, flag: str, least: int, example: str) -> None:
    require(value >= least, flag, value, f"at least {least}", example)


def _dropout(value: float, flag: str) -> None:
    require(0 <= value < 1, flag, value, "in [0, 1)", "0.05")


@dataclass(kw_only=True)
class TunerChoice:
    """Which tuner trains the model"""

    tuner: str = option(
        "lora",
        help="How the weights are trained (`martlet plugins --kind tuners` describes each; "
        "`martlet sft --tuner NAME --help` shows its options).",
        aliases=("train_type", "tuner_type", "peft_type", "tuner_backend_type"),
        names_of="tuners",
    )
    # the same option as the core's ModelOptions.task_type: one flag sets both
    task_type: Literal["causal_lm", "seq_cls", "reward"] = option(
        "causal_lm",
        help="The model's head: causal_lm (a language model) or seq_cls (a scalar or "
        "--num-labels classification head, e.g. a reward model; reward is another name).",
    )

    def __post_init__(self) -> None:
        self.task_type = check_task_type(self.task_type)  # type: ignore[assignment]
        parent = getattr(super(), "__post_init__", None)
        if parent is not None:
            parent()


@dataclass(kw_only=True)
class NeftuneOptions:
    """NEFTune: noise on the embeddings while training (every martlet-peft tuner)"""

    neftune_noise_alpha: float | None = option(
        None, help="NEFTune: add uniform noise of this scale to embeddings while training."
    )

    def __post_init__(self) -> None:
        noise = self.neftune_noise_alpha
        require(
            noise is None or noise > 0,
            "neftune-noise-alpha",
            noise,
            "more than 0",
            "5 (or leave it out for no noise)",
        )


@dataclass(kw_only=True)
class FullOptions(NeftuneOptions):
    """Full: every weight trains"""


@dataclass(kw_only=True)
class LoraOptions(NeftuneOptions):
    """LoRA: low-rank adapters (rsLoRA, DoRA, PiSSA/OLoRA initialisation, LoRA+)"""

    target_modules: list[str] = _targets()
    modules_to_save: list[str] = option(
        default_factory=list, help="Extra modules trained in full and saved with the adapter."
    )
    lora_rank: int = option(8, help="LoRA rank r.", aliases=("lora_r",))
    lora_alpha: int = option(32, help="LoRA alpha (scale = alpha / r, or / sqrt(r) with rsLoRA).")
    lora_dropout: float = option(0.05, help="Dropout on the LoRA input.")
    fused_lora: bool | None = option(
        None,
        help="Deprecated: the fused LoRA layers are the fused-lora kernel of martlet-kernels "
        "now, on by default; --kernels auto,-fused-lora runs PEFT's own modules.",
    )
    use_rslora: bool = option(False, help="Rank-stabilised LoRA: scale by alpha / sqrt(r).")
    use_dora: bool = option(False, help="DoRA: weight-decomposed LoRA.")
    init_weights: str = option(
        "true",
        help="LoRA initialisation: true, gaussian, pissa, pissa_niter_N, olora.",
        aliases=("init_lora_weights",),
    )
    lora_plus_ratio: float | None = option(
        None,
        help="LoRA+: the learning rate of B matrices is this many times the base rate.",
        aliases=("lorap_lr_ratio", "loraplus_lr_ratio"),
    )

    def __post_init__(self) -> None:
        _at_least(self.lora_rank, "lora-rank", 1, "8")
        require(
            self.lora_alpha > 0,
            "lora-alpha",
            self.lora_alpha,
            "more than 0",
            "32",
            why="the adapter's output is scaled by alpha / rank: 0 would switch it off",
        )
        _dropout(self.lora_dropout, "lora-dropout")
        ratio = self.lora_plus_ratio
        require(ratio is None or ratio > 0, "lora-plus-ratio", ratio, "more than 0", "16")


@dataclass(kw_only=True)
class AdaLoraOptions(NeftuneOptions):
    """AdaLoRA: LoRA whose rank budget is re-allocated by importance"""

    target_modules: list[str] = _targets()
    lora_alpha: int = option(32, help="LoRA alpha of the adapters.")
    lora_dropout: float = option(0.05, help="Dropout on the adapters' input.")
    adalora_target_r: int = option(8, help="AdaLoRA: average target rank.")
    adalora_init_r: int = option(12, help="AdaLoRA: initial rank of each matrix.")
    adalora_tinit: int = option(0, help="AdaLoRA: warm-up steps before rank pruning.")
    adalora_tfinal: int = option(0, help="AdaLoRA: final steps at the target budget.")
    adalora_deltaT: int = option(1, help="AdaLoRA: steps between budget allocations.")
    adalora_orth_reg_weight: float = option(0.5, help="AdaLoRA: orthogonal regularisation.")
    adalora_total_step: int | None = option(
        None, help="AdaLoRA: total training steps (defaults to the run's max steps)."
    )

    def __post_init__(self) -> None:
        require(self.lora_alpha > 0, "lora-alpha", self.lora_alpha, "more than 0", "32")
        _dropout(self.lora_dropout, "lora-dropout")
        _at_least(self.adalora_target_r, "adalora-target-r", 1, "8")
        _at_least(self.adalora_init_r, "adalora-init-r", 1, "12")
        _at_least(self.adalora_deltaT, "adalora-deltaT", 1, "1")


@dataclass(kw_only=True)
class IA3Options(NeftuneOptions):
    """IA3: learned rescaling of activations"""

    target_modules: list[str] = _targets()
    ia3_feedforward_modules: list[str] = option(
        default_factory=lambda: ["down_proj"],
        help="IA3: which target modules are feed-forward (scaled on their input).",
    )


@dataclass(kw_only=True)
class VeraOptions(NeftuneOptions):
    """VeRA: shared random projections with trained scaling vectors"""

    target_modules: list[str] = _targets()
    vera_rank: int = option(64, help="VeRA: rank of the shared random projections.")

    def __post_init__(self) -> None:
        _at_least(self.vera_rank, "vera-rank", 1, "64")


@dataclass(kw_only=True)
class BoftOptions(NeftuneOptions):
    """BOFT: butterfly orthogonal fine-tuning"""

    target_modules: list[str] = _targets()
    boft_block_size: int = option(4, help="BOFT: block size (divides the layer width).")
    boft_n_butterfly_factor: int = option(1, help="BOFT: butterfly factor count.")
    boft_dropout: float = option(0.0, help="BOFT: multiplicative dropout.")

    def __post_init__(self) -> None:
        _at_least(self.boft_block_size, "boft-block-size", 1, "4")
        _at_least(self.boft_n_butterfly_factor, "boft-n-butterfly-factor", 1, "1")
        _dropout(self.boft_dropout, "boft-dropout")


@dataclass(kw_only=True)
class LohaOptions(NeftuneOptions):
    """LoHa: low-rank Hadamard-product adapters"""

    target_modules: list[str] = _targets()
    loha_rank: int = option(8, help="LoHa rank.")
    loha_alpha: int = option(16, help="LoHa alpha.")

    def __post_init__(self) -> None:
        _at_least(self.loha_rank, "loha-rank", 1, "8")


@dataclass(kw_only=True)
class LokrOptions(NeftuneOptions):
    """LoKr: low-rank Kronecker-product adapters"""

    target_modules: list[str] = _targets()
    lokr_rank: int = option(8, help="LoKr rank.")
    lokr_alpha: int = option(16, help="LoKr alpha.")

    def __post_init__(self) -> None:
        _at_least(self.lokr_rank, "lokr-rank", 1, "8")


@dataclass(kw_only=True)
class PrefixTuningOptions(NeftuneOptions):
    """Prefix tuning: trained key/value prefixes in every layer"""

    num_virtual_tokens: int = option(16, help="Virtual tokens (prefix length).")

    def __post_init__(self) -> None:
        _at_least(self.num_virtual_tokens, "num-virtual-tokens", 1, "16")


@dataclass(kw_only=True)
class PromptTuningOptions(NeftuneOptions):
    """Prompt tuning: trained virtual-token embeddings"""

    num_virtual_tokens: int = option(16, help="Virtual tokens prepended to the input.")
    prompt_tuning_init_text: str | None = option(
        None, help="Initialise the virtual tokens from this text."
    )

    def __post_init__(self) -> None:
        _at_least(self.num_virtual_tokens, "num-virtual-tokens", 1, "16")


@dataclass(kw_only=True)
class FreezeOptions(NeftuneOptions):
    """Freeze: only parameters matching regexes or the last N layers train"""

    trainable_parameters: list[str] = option(
        default_factory=list,
        help="Regexes of parameter names to train (everything else is frozen).",
        aliases=("trainable_parameters_regex",),
    )
    trainable_layers: int = option(
        0, help="Train the last N decoder layers (with the regexes, if any)."
    )

    def __post_init__(self) -> None:
        _at_least(self.trainable_layers, "trainable-layers", 0, "2")


@dataclass(kw_only=True)
class GaloreOptions(NeftuneOptions):
    """GaLore: full training with low-rank projected gradients"""

    galore_rank: int = option(128, help="GaLore: rank of the gradient projection.")
    galore_update_proj_gap: int = option(50, help="GaLore: steps between projection updates.")
    galore_scale: float = option(1.0, help="GaLore: scale of the projected update.")
    galore_target_modules: list[str] = option(
        default_factory=lambda: ["attn", "mlp"],
        help="GaLore: substrings of the 2-D weights optimised with projection.",
    )

    def __post_init__(self) -> None:
        _at_least(self.galore_rank, "galore-rank", 1, "128")
        _at_least(self.galore_update_proj_gap, "galore-update-proj-gap", 1, "50")


@dataclass(kw_only=True)
class LisaOptions(NeftuneOptions):
    """LISA: a few random decoder layers train at a time"""

    lisa_activated_layers: int = option(2, help="LISA: decoder layers trained at a time.")
    lisa_step_interval: int = option(20, help="LISA: steps between re-sampling the layers.")

    def __post_init__(self) -> None:
        _at_least(self.lisa_activated_layers, "lisa-activated-layers", 1, "2")
        _at_least(self.lisa_step_interval, "lisa-step-interval", 1, "20")


@dataclass(kw_only=True)
class LlamaProOptions(NeftuneOptions):
    """LLaMA-Pro: block expansion"""

    llamapro_num_new_blocks: int = option(
        4, help="LLaMA-Pro: new identity-initialised blocks inserted (and trained)."
    )

    def __post_init__(self) -> None:
        _at_least(self.llamapro_num_new_blocks, "llamapro-num-new-blocks", 1, "4")


@dataclass(kw_only=True)
class ReftOptions(NeftuneOptions):
    """ReFT: LoReFT interventions on hidden states"""

    reft_layers: list[int] | None = option(
        None, help="ReFT: decoder layers whose output is intervened on (default: all)."
    )
    reft_rank: int = option(4, help="ReFT: rank of the LoReFT subspace.")

    def __post_init__(self) -> None:
        _at_least(self.reft_rank, "reft-rank", 1, "4")


#: each tuner's own options, in the order of the combined :class:`TunerOptions`
PER_TUNER = (
    FullOptions,
    LoraOptions,
    AdaLoraOptions,
    IA3Options,
    VeraOptions,
    BoftOptions,
    LohaOptions,
    LokrOptions,
    PromptTuningOptions,
    PrefixTuningOptions,
    FreezeOptions,
    GaloreOptions,
    LisaOptions,
    LlamaProOptions,
    ReftOptions,
)


@dataclass(kw_only=True)
class TunerOptions(TunerChoice, *PER_TUNER):  # type: ignore[misc]
    """Every tuner's options in one class (for a tuner's ``prepare`` called from Python); a
    command takes a ``tuner`` selector and the selected tuner's own class instead."""

    def __post_init__(self) -> None:
        TunerChoice.__post_init__(self)
        NeftuneOptions.__post_init__(self)
        for cls in PER_TUNER:
            check = vars(cls).get("__post_init__")
            if check is not None:
                check(self)
