"""The tuner options every training command shares (``--tuner lora --lora-rank 8 ...``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from martlet.config import option

from martlet_peft.base import check_task_type


@dataclass(kw_only=True)
class TunerOptions:
    """Which tuner trains the model, and its settings. Names follow ms-swift where it has one."""

    tuner: str = option(
        "lora",
        help="How the weights are trained (`martlet plugins --kind tuners` describes each).",
        aliases=("train_type", "tuner_type", "peft_type", "tuner_backend_type"),
        names_of="tuners",
    )
    target_modules: list[str] = option(
        default_factory=lambda: ["all-linear"],
        help="Module names to adapt (suffixes such as q_proj v_proj), or all-linear.",
    )
    modules_to_save: list[str] = option(
        default_factory=list, help="Extra modules trained in full and saved with the adapter."
    )
    # the same option as martlet-hf's ModelOptions.task_type: one flag sets both
    task_type: Literal["causal_lm", "seq_cls", "reward"] = option(
        "causal_lm",
        help="The model's head: causal_lm (a language model) or seq_cls (a scalar or "
        "--num-labels classification head, e.g. a reward model; reward is another name).",
    )
    # LoRA and its variants
    lora_rank: int = option(8, help="LoRA rank r.", aliases=("lora_r",))
    lora_alpha: int = option(32, help="LoRA alpha (scale = alpha / r, or / sqrt(r) with rsLoRA).")
    lora_dropout: float = option(0.05, help="Dropout on the LoRA input.")
    fused_lora: bool = option(
        True,
        help="Compute plain LoRA layers with one fused function (the same values with less "
        "time and memory); off runs PEFT's own modules.",
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
    # AdaLoRA
    adalora_target_r: int = option(8, help="AdaLoRA: average target rank.")
    adalora_init_r: int = option(12, help="AdaLoRA: initial rank of each matrix.")
    adalora_tinit: int = option(0, help="AdaLoRA: warm-up steps before rank pruning.")
    adalora_tfinal: int = option(0, help="AdaLoRA: final steps at the target budget.")
    adalora_deltaT: int = option(1, help="AdaLoRA: steps between budget allocations.")
    adalora_orth_reg_weight: float = option(0.5, help="AdaLoRA: orthogonal regularisation.")
    adalora_total_step: int | None = option(
        None, help="AdaLoRA: total training steps (defaults to the run's max steps)."
    )
    # IA3
    ia3_feedforward_modules: list[str] = option(
        default_factory=lambda: ["down_proj"],
        help="IA3: which target modules are feed-forward (scaled on their input).",
    )
    # VeRA
    vera_rank: int = option(64, help="VeRA: rank of the shared random projections.")
    # BOFT
    boft_block_size: int = option(4, help="BOFT: block size (divides the layer width).")
    boft_n_butterfly_factor: int = option(1, help="BOFT: butterfly factor count.")
    boft_dropout: float = option(0.0, help="BOFT: multiplicative dropout.")
    # LoHa / LoKr
    loha_rank: int = option(8, help="LoHa rank.")
    loha_alpha: int = option(16, help="LoHa alpha.")
    lokr_rank: int = option(8, help="LoKr rank.")
    lokr_alpha: int = option(16, help="LoKr alpha.")
    # prompt / prefix tuning
    num_virtual_tokens: int = option(16, help="Prompt/prefix tuning: virtual token count.")
    prompt_tuning_init_text: str | None = option(
        None, help="Prompt tuning: initialise the virtual tokens from this text."
    )
    # freeze
    trainable_parameters: list[str] = option(
        default_factory=list,
        help="Freeze: regexes of parameter names to train (everything else is frozen).",
        aliases=("trainable_parameters_regex",),
    )
    trainable_layers: int = option(
        0, help="Freeze: train the last N decoder layers (with the regexes, if any)."
    )
    # GaLore
    galore_rank: int = option(128, help="GaLore: rank of the gradient projection.")
    galore_update_proj_gap: int = option(50, help="GaLore: steps between projection updates.")
    galore_scale: float = option(1.0, help="GaLore: scale of the projected update.")
    galore_target_modules: list[str] = option(
        default_factory=lambda: ["attn", "mlp"],
        help="GaLore: substrings of the 2-D weights optimised with projection.",
    )
    # LISA
    lisa_activated_layers: int = option(2, help="LISA: decoder layers trained at a time.")
    lisa_step_interval: int = option(20, help="LISA: steps between re-sampling the layers.")
    # LLaMA-Pro
    llamapro_num_new_blocks: int = option(
        4, help="LLaMA-Pro: new identity-initialised blocks inserted (and trained)."
    )
    # ReFT
    reft_layers: list[int] | None = option(
        None, help="ReFT: decoder layers whose output is intervened on (default: all)."
    )
    reft_rank: int = option(4, help="ReFT: rank of the LoReFT subspace.")
    # any tuner
    neftune_noise_alpha: float | None = option(
        None, help="NEFTune: add uniform noise of this scale to embeddings while training."
    )

    def __post_init__(self) -> None:
        self.task_type = check_task_type(self.task_type)  # type: ignore[assignment]
        parent = getattr(super(), "__post_init__", None)
        if parent is not None:
            parent()
