"""The options of the training loop (``--learning-rate``, ``--save-steps``, ...).

Names follow ms-swift and transformers' ``TrainingArguments`` where they have one, so existing
command lines and YAML files work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from martlet.config import apply_implied, option, require


@dataclass(kw_only=True)
class TrainOptions:
    """How the loop runs: steps, batches, optimizer, schedule, precision, logging, saving."""

    output_dir: str = option("output", help="The run directory (weights, metrics, checkpoints).")
    overwrite_output_dir: bool = option(
        False, help="Start afresh in an output directory that already holds a run."
    )
    num_train_epochs: float = option(1.0, help="Passes over the training data.")
    max_steps: int = option(-1, help="Stop after this many optimizer steps (-1: by epochs).")
    per_device_train_batch_size: int = option(
        1, help="Rows per micro-batch on each device.", aliases=("batch_size",)
    )
    per_device_eval_batch_size: int = option(1, help="Rows per evaluation batch.")
    gradient_accumulation_steps: int = option(
        1, help="Micro-batches per optimizer step.", aliases=("grad_accum",)
    )
    learning_rate: float = option(1e-4, help="Peak learning rate.", aliases=("lr",))
    lr_scheduler_type: Literal["cosine", "linear", "constant", "constant_with_warmup"] = option(
        "cosine", help="Learning-rate schedule after warm-up."
    )
    warmup_ratio: float = option(0.0, help="Fraction of the steps spent warming up.")
    warmup_steps: int = option(0, help="Warm-up steps (wins over --warmup-ratio).")
    weight_decay: float = option(0.0, help="Decoupled weight decay.")
    max_grad_norm: float = option(1.0, help="Clip the gradient norm to this (0: no clipping).")
    optim: Literal["adamw", "adamw_8bit", "sgd", "adafactor"] = option(
        "adamw",
        help="Optimizer (a tuner may bring its own, e.g. GaLore, LoRA+).",
        aliases=("optimizer",),
    )
    adam_beta1: float = option(0.9, help="AdamW beta1.")
    adam_beta2: float = option(0.999, help="AdamW beta2.")
    adam_epsilon: float = option(1e-8, help="AdamW epsilon.")
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = option(
        "auto",
        help="Autocast the forward pass to this dtype, keeping float32 weights that train; "
        "auto: bf16 where the device multiplies it natively (a CPU with AVX512-BF16 or AMX, "
        "GPUs from compute capability 8.0), fp16 on older GPUs, none otherwise.",
    )
    gradient_checkpointing: bool = option(
        False, help="Recompute activations in the backward pass to save memory."
    )
    selective_checkpointing: bool = option(
        False,
        help="Keep matrix-product outputs and recompute only element-wise ops in the backward "
        "pass: much of --gradient-checkpointing's saving for a small part of its time.",
    )
    max_activation_memory: str = option(
        "auto",
        help="The most memory the activations a micro-batch's forward pass saves may take "
        "(e.g. 512MB, 2GiB): decoder layers are recomputed in the backward pass, as few as "
        "each batch needs (none for short batches), to stay within it. auto: a third of the "
        "size of the model's weights; none: keep every activation. --gradient-checkpointing and "
        "--selective-checkpointing replace it.",
        aliases=("activation_memory",),
    )
    kernels: list[str] = option(
        default_factory=lambda: ["auto"],
        help="Kernels switched into the model for the run (the same values in less time or "
        "memory): auto (every installed kernel that fits the device and precision), none (the "
        "model's own layers) or names, comma-separated; `martlet plugins --kind kernels` "
        "lists them.",
        metavar="NAME",
    )
    seed: int = option(42, help="Random seed for initialisation, data order and dropout.")
    logging_steps: int = option(5, help="Log metrics every N optimizer steps.")
    eval_on_start: bool = option(
        False, help="Evaluate once before the first step (a baseline for the eval metrics)."
    )
    eval_steps: int | None = option(None, help="Evaluate every N steps (default: as --save-steps).")
    save_steps: int = option(500, help="Save a checkpoint every N optimizer steps.")
    save_total_limit: int | None = option(2, help="Keep only the newest N checkpoints.")
    resume_from_checkpoint: str | None = option(
        None, help="A checkpoint folder to continue from, or `auto` for the newest one."
    )
    early_stopping_patience: int | None = option(
        None, help="Stop when eval loss has not improved for N evaluations."
    )
    group_by_length: bool = option(
        False, help="Batch rows of similar length together to waste less on padding."
    )
    report_to: list[str] = option(
        default_factory=list,
        help="Loggers (callback records; each one's options join the command's).",
        names_of="callbacks",
    )
    device: str | None = option(None, help="cpu, cuda, mps, ... (default: the best available).")
    disable_progress_bar: bool = option(False, help="No progress bar (logs still print).")

    def check_values(self) -> None:
        """Reject values the loop cannot use, before anything loads (a ConfigError naming the
        flag, the value and the range)."""
        import math

        def number(value: float) -> bool:
            return isinstance(value, (int, float)) and math.isfinite(value)

        lr = self.learning_rate
        require(number(lr) and lr >= 0, "learning-rate", lr, "a number of at least 0", "1e-4")
        by_steps = bool(self.max_steps and self.max_steps > 0)
        require(self.max_steps >= -1, "max-steps", self.max_steps, "-1 (by epochs) or more", "100")
        epochs = self.num_train_epochs
        require(
            by_steps or (number(epochs) and epochs > 0),
            "num-train-epochs",
            epochs,
            "more than 0 (or give --max-steps)",
            "1",
        )
        for flag, value in (
            ("per-device-train-batch-size", self.per_device_train_batch_size),
            ("per-device-eval-batch-size", self.per_device_eval_batch_size),
            ("gradient-accumulation-steps", self.gradient_accumulation_steps),
            ("logging-steps", self.logging_steps),
            ("save-steps", self.save_steps),
        ):
            require(value >= 1, flag, value, "at least 1", "4")
        for flag, value in (
            ("eval-steps", self.eval_steps),
            ("early-stopping-patience", self.early_stopping_patience),
        ):
            require(value is None or value >= 1, flag, value, "at least 1", "50")
        limit = self.save_total_limit
        require(limit is None or limit >= 0, "save-total-limit", limit, "at least 0", "2")
        for flag, value in (
            ("warmup-steps", self.warmup_steps),
            ("weight-decay", self.weight_decay),
            ("max-grad-norm", self.max_grad_norm),
            ("adam-epsilon", self.adam_epsilon),
            ("seed", self.seed),
        ):
            require(number(value) and value >= 0, flag, value, "at least 0", "0")
        ratio = self.warmup_ratio
        require(number(ratio) and 0 <= ratio <= 1, "warmup-ratio", ratio, "between 0 and 1", "0.1")
        for flag, value in (("adam-beta1", self.adam_beta1), ("adam-beta2", self.adam_beta2)):
            require(number(value) and 0 <= value < 1, flag, value, "in [0, 1)", "0.9")


@dataclass(kw_only=True)
class LaunchOptions:
    """How many processes train, and how they spread the model (the command starts them under
    torchrun itself)."""

    nproc_per_node: int = option(
        1,
        help="Training processes on this machine (one per device; several CPU processes "
        "split the cores).",
        aliases=("nproc",),
        metavar="N",
    )
    nnodes: int = option(1, help="Machines taking part.", metavar="K")
    node_rank: int = option(0, help="This machine's index among --nnodes (0 is the main one).")
    master_addr: str = option(
        "127.0.0.1", help="Address of the machine with --node-rank 0.", metavar="HOST"
    )
    master_port: int | None = option(
        None,
        help="Port of the rendezvous there (default: a free one on one machine, 29500).",
        metavar="PORT",
    )
    parallel: str | None = option(
        None,
        help="How the processes share the work: a parallel strategy (`martlet plugins --kind "
        "parallel_strategies`; ddp when more than one process), with its own options.",
        aliases=("parallel_strategy",),
        names_of="parallel_strategies",
        implied_by={"deepspeed": "deepspeed"},  # ms-swift's `--deepspeed zero2` alone
    )
    ddp_timeout: int = option(
        1800,
        help="Seconds a process waits for the others at a synchronisation before the run fails.",
        metavar="SECONDS",
    )

    def __post_init__(self) -> None:
        apply_implied(self)  # `--deepspeed zero2` alone: --parallel deepspeed
        parent = getattr(super(), "__post_init__", None)
        if parent is not None:
            parent()

    def check_launch(self) -> None:
        """Reject impossible process counts before anything starts."""
        for flag, value in (("nproc-per-node", self.nproc_per_node), ("nnodes", self.nnodes)):
            require(value >= 1, flag, value, "at least 1", "2")
        require(
            0 <= self.node_rank < self.nnodes, "node-rank", self.node_rank,
            f"between 0 and --nnodes - 1 ({self.nnodes - 1})", "0",
        )  # fmt: skip
        require(self.ddp_timeout >= 1, "ddp-timeout", self.ddp_timeout, "at least 1", "1800")
        port = self.master_port
        require(port is None or 0 < port < 65536, "master-port", port, "a TCP port", "29500")

    @property
    def world_size(self) -> int:
        """Processes in the whole run."""
        return self.nproc_per_node * self.nnodes
