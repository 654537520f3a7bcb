"""``martlet rlhf``: preference alignment, reward models, distillation and online RL.

    config ──> the loss record (--method: dpo, kto, simpo, cpo, orpo, rm, gkd, grpo, rloo,
               reinforce_pp, or a plugin's)
           ──> policy model (+ reference or teacher) ──> rows of the shape the loss trains on
           ──> an objective (martlet_train.objectives, martlet_train.online) ──> the same
               Trainer as ``sft``

The objectives themselves are loss records (martlet-align's, or any plugin's): pure functions of
log-probabilities, scores or logits, or (``inputs="rollouts"``) of sampled completions scored
by reward functions (``--reward-funcs``, records of the ``rewards`` kind). This module picks the
models and data they need.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from martlet.compose import option_values
from martlet.config import build, option, require
from martlet.errors import ConfigError, MartletError
from martlet.rewards import RewardOptions

from martlet_train.job import TrainJobConfig
from martlet_train.loop import TrainResult


@dataclass(kw_only=True)
class RlhfConfig(TrainJobConfig, RewardOptions):
    """Every option of ``martlet rlhf``: those of a training job and the objective's."""

    method: str = option(
        "dpo",
        help="The objective: a loss record (dpo, kto, simpo, cpo, orpo, rm (reward model), "
        "gkd (distillation), or a plugin's); `martlet rlhf --method NAME --help` shows its "
        "options.",
        aliases=("rlhf_type",),
        names_of="losses",
        where={"inputs": ("logps", "rewards", "logits", "rollouts")},
    )
    reference_free: bool = option(
        False, help="DPO without a reference model (its log-probs taken as 0)."
    )
    ref_model: str | None = option(
        None,
        help="The reference model (default: the policy with its adapter disabled, or a copy of "
        "the base model for full fine-tuning).",
    )
    precompute_ref_logps: bool = option(
        False,
        help="Compute the reference log-probs once before training, then free the reference.",
        aliases=("precompute_ref_log_probs",),
    )
    teacher_model: str | None = option(None, help="GKD: the teacher to distil from.")
    lmbda: float = option(
        0.5, help="GKD: fraction of steps on responses the student generates (on-policy)."
    )
    sft_alpha: float = option(0.0, help="GKD: add this times the NLL of the responses.")
    max_completion_length: int = option(
        128,
        help="GKD and online RL: most tokens the policy generates per response.",
        aliases=("max_new_tokens",),
    )
    log_completions_every: int = option(
        5,
        help="Online RL: every N generation batches, write the first prompt's completions "
        "and their rewards to completions.jsonl in the run directory (0: never).",
        metavar="N",
    )


def check(config: RlhfConfig) -> Any:
    """The loss record, after checking the options fit it (before any model loads)."""
    from martlet_train import job

    record = job._require("losses", config.method)
    if record.inputs == "batch":
        command = "pt" if record.data == "text" else "sft"
        if record.impl == "martlet_train.losses:causal_lm_loss":  # what sft and pt train with
            raise ConfigError(
                f"--method {config.method} is a supervised objective",
                fix=f"run `martlet {command}` instead of `martlet rlhf`",
            )
        raise ConfigError(
            f"--method {config.method} is a supervised objective (called with a model and a batch)",
            why="`martlet rlhf` trains losses of log-probabilities, rewards or logits",
            fix=f"run `martlet {command} --loss {record.name}`",
        )
    if record.inputs not in ("logps", "rewards", "logits", "rollouts"):
        raise ConfigError(
            f"--method {config.method} cannot be trained by this version of `martlet rlhf`",
            why=f"it is a loss of {record.inputs!r} (from {record.origin}); martlet rlhf "
            "trains losses of log-probabilities, rewards, logits or rollouts",
            fix="choose another --method, or upgrade martlet-train (pip install -U martlet-train)",
        )
    if record.inputs != "rollouts" and config.reward_funcs:
        raise ConfigError(
            f"--reward-funcs: --method {config.method} does not sample completions",
            fix="leave out --reward-funcs, or choose an online method (grpo, rloo, reinforce_pp)",
        )
    if record.inputs == "rollouts":
        check_online(config, record)
    if record.inputs == "logits" and not config.teacher_model:
        raise ConfigError(
            f"--method {config.method} distils from a teacher", fix="pass --teacher-model M"
        )
    if record.inputs == "logits":
        length = config.max_completion_length
        require(length >= 1, "max-completion-length", length, "at least 1", "128")
    if config.reference_free and not record.reference:
        raise ConfigError(
            f"--reference-free: --method {config.method} uses no reference model anyway"
        )
    if config.ref_model and not record.reference:
        raise ConfigError(
            f"--ref-model: --method {config.method} is reference-free",
            fix="leave out --ref-model (or choose --method dpo or kto)",
        )
    if config.packing:
        raise ConfigError(
            "--packing is for sft/pt", why="preference rows are scored one sequence at a time"
        )
    if record.inputs == "rewards":
        config.task_type = "seq_cls"
    job.check(config)
    if not 0.0 <= config.lmbda <= 1.0:
        raise ConfigError(f"--lmbda must be between 0 and 1, got {config.lmbda}")
    return record


def try_options(record: Any, loss: Any, config: RlhfConfig) -> None:
    """Call the loss once on two made-up pairs with the run's options, so a bad option value
    (an unknown --loss-type, a negative --beta, ...) fails now, before any model loads."""
    import torch

    from martlet_train.objectives import accepted

    options = option_values(config, record)  # exactly the options its record declares
    extra: dict[str, Any] = {}
    a, b = torch.tensor([-3.0, -5.0]), torch.tensor([-4.0, -2.0])
    lengths = {"chosen_lengths": torch.tensor([2, 3]), "rejected_lengths": torch.tensor([3, 2])}
    if record.inputs == "logits":
        args: tuple[Any, ...] = (torch.randn(2, 5), torch.randn(2, 5))
    elif record.inputs == "rewards":
        args = (a, b)
    elif record.data == "kto":
        args = (a, b, torch.tensor([True, False]), a, b)
    else:
        args = (a, b, b, a) if record.reference else (a, b)
        extra = accepted(loss, lengths)
    try:
        loss(*args, **options, **extra)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"--method {record.name} cannot use these options", why=str(exc)) from exc


def rlhf(config: RlhfConfig | Mapping[str, Any]) -> TrainResult:
    """Train with a preference, reward or distillation objective; the Python form of
    ``martlet rlhf``."""
    from martlet_train import job as jobs
    from martlet_train.datasets import load_train_val

    if not isinstance(config, RlhfConfig):
        config = build(RlhfConfig, values=dict(config))
    record = check(config)
    loss = record.load()
    if record.inputs != "rollouts":
        try_options(record, loss, config)
    from martlet_train import launch

    if launch.wanted(config):  # several processes: this one starts them and waits
        launch.launch(config, "rlhf")
        return launch.finished_result(config)
    if record.inputs == "rollouts":  # prompts (an answer optional), with every column
        train_rows, val_rows = load_train_val(config, prompts=True, keep_columns=True)
        return train_online(config, record, train_rows, val_rows)
    train_rows, val_rows = load_train_val(config)  # bad or empty data fails before the model loads
    job = jobs.start(config, f"rlhf --method {record.name}")
    train = encode(train_rows, job.template, job.tokenizer, config, record)
    val = encode(val_rows, job.template, job.tokenizer, config, record) if val_rows else []
    tuner = jobs.prepare_model(job)
    with job.kernels:  # fit closes it; this, should anything fail before
        base_collate = jobs._collator(config, job.tokenizer, job.model)
        objective = make_objective(config, record, loss, job.model, job.tokenizer, base_collate)
        collate = RlhfCollator(base_collate)
        reference = getattr(objective, "reference", None)
        if config.precompute_ref_logps and reference is not None:
            for rows in (train, val):
                precompute_reference(objective, job.model, rows, collate, config, job.accelerator)
            if reference.model is not None:
                reference.model = None  # freed: every batch carries its reference log-probs
        return jobs.fit(job, tuner, train=train, val=val, collate=collate, loss_fn=objective)


# ------------------------------------------------------------------------- pieces


def check_online(config: RlhfConfig, record: Any) -> Any:
    """Online RL: the objective's options (built: a bad value fails here), the reward
    functions (named, installed, their options) and the lengths, before anything loads."""
    from martlet import rewards

    algo = record.load()(**option_values(config, record))
    if getattr(algo, "uses_values", False):
        raise ConfigError(
            f"--method {config.method} trains a value model, which this version of `martlet "
            "rlhf` does not build",
            why="its advantages come from a value head (GAE) trained beside the policy",
            fix="choose --method grpo, rloo or reinforce_pp (no value model)",
        )
    if not config.reward_funcs:
        raise ConfigError(
            f"--method {config.method} needs reward functions",
            why="online RL scores the completions the policy samples",
            fix="pass --reward-funcs NAME ... (e.g. accuracy format; `martlet plugins` lists "
            "the installed ones)",
        )
    rewards.check(config)
    require(config.max_completion_length >= 1, "max-completion-length",
            config.max_completion_length, "at least 1", "128")  # fmt: skip
    if config.max_length is not None and config.max_length <= config.max_completion_length:
        raise ConfigError(
            f"--max-length {config.max_length} leaves no room for a prompt",
            why=f"a row is the prompt and up to --max-completion-length "
            f"{config.max_completion_length} generated tokens",
            fix=f"raise --max-length above {config.max_completion_length}, or lower "
            "--max-completion-length",
        )
    group = int(algo.group_size)
    if config.per_device_train_batch_size % group:
        raise ConfigError(
            f"--per-device-train-batch-size {config.per_device_train_batch_size} does not "
            f"hold whole groups of --num-generations {group}",
            why="it counts completions (as ms-swift and TRL do) and a micro-batch holds every "
            "completion of its prompts",
            fix=f"pass a multiple of {group} (e.g. --per-device-train-batch-size {group})",
        )
    return algo


def train_online(config: RlhfConfig, record: Any, train_rows: Any, val_rows: Any) -> TrainResult:
    """``martlet rlhf`` with a loss of ``inputs="rollouts"``: prompts, reward functions and a
    reference where the objective needs one (:mod:`martlet_train.online`)."""
    from martlet import rewards as reward_funcs

    from martlet_train import job as jobs
    from martlet_train import objectives
    from martlet_train.online import RolloutObjective, collate_prompts, encode_prompts

    algo = check_online(config, record)
    train_rows, val_rows = list(train_rows), list(val_rows or [])
    dataset = ", ".join(config.dataset)
    columns = {k for row in train_rows for k in row if k != "messages"}
    job = jobs.start(config, f"rlhf --method {record.name}")
    rewards = reward_funcs.build(config, device=str(job.accelerator.device))
    rewards.check_columns(columns, dataset=f"--dataset {dataset}")
    limit = config.max_length - config.max_completion_length if config.max_length else None
    train = encode_prompts(
        train_rows, job.template, job.tokenizer, max_prompt_length=limit, dataset=dataset
    )
    val = (
        encode_prompts(
            val_rows, job.template, job.tokenizer, max_prompt_length=limit, dataset=dataset
        )
        if val_rows
        else []
    )
    tuner = jobs.prepare_model(job)
    with job.kernels:
        reference = None
        if algo.uses_reference:
            reference = objectives.Reference(_reference_model(config, job.model))
        objective = RolloutObjective(
            algo,
            rewards,
            tokenizer=job.tokenizer,
            completions_per_micro_batch=config.per_device_train_batch_size,
            reference=reference,
            sample_every=config.log_completions_every,
            samples_file=Path(config.output_dir) / "completions.jsonl"
            if job.accelerator.is_main_process
            else None,
        )
        return jobs.fit(
            job, tuner, train=train, val=val, collate=collate_prompts, loss_fn=objective
        )


def _lm_load_options(config: RlhfConfig) -> dict[str, Any]:
    """Loader options for a reference or a teacher: always language models, whatever head the
    policy has."""
    from martlet_train import job

    options = job._load_options(config)
    options.pop("task_type", None)
    options.pop("num_labels", None)
    return options


#: row kind (:func:`martlet.examples.row_kind`) -> (what it is, an embedded dataset of that kind);
#: a conversation objective also takes the chosen conversation of a preference or KTO row
ROW_SHAPES = {
    "preference": ("preference pairs (chosen and rejected responses)", "sample-dpo"),
    "kto": ("KTO rows (a response and a boolean `label`)", "sample-kto"),
    "messages": ("conversations (`messages`)", "sample-sft"),
}


def encode(
    rows: Any, template: Any, tokenizer: Any, config: RlhfConfig, record: Any
) -> list[dict[str, Any]]:
    """Encode ``rows`` for ``record``: its data shape is checked row by row, and the labels
    keep only the final response."""
    from martlet.examples import encode_rows, row_kind

    from martlet_train.objectives import add_kl_rows, last_response_only

    rows = list(rows)
    need = record.data if record.data in ROW_SHAPES else "messages"
    for row in rows:
        kind = row_kind(row)
        if kind != need and (need != "messages" or kind == "text"):
            shape, example = ROW_SHAPES[need]
            raise ConfigError(
                f"--method {record.name} trains on {shape}, and a row of --dataset "
                f"{', '.join(config.dataset)} is not one",
                why=f"the row has the keys {sorted(row)}",
                fix=f"use a dataset of that shape (the embedded {example} is one)",
            )
    encoded = list(
        encode_rows(
            rows,
            template,
            tokenizer=tokenizer,
            max_length=config.max_length,
            on_bad_rows=getattr(config, "on_bad_rows", "error"),
        )
    )
    if not encoded:
        raise MartletError(
            "no rows left to train on after encoding",
            why="every row was too long for --max-length or had no response tokens",
            fix="raise --max-length or check the data",
        )
    for row in encoded:
        if record.inputs in ("logps", "rewards"):
            last_response_only(row)
            if "rejected_labels" in row:
                last_response_only(row, "rejected_")
    if record.data == "kto":
        add_kl_rows(encoded, config.seed, config.max_length)
    return encoded


def make_objective(
    config: RlhfConfig, record: Any, loss: Any, model: Any, tokenizer: Any, collate: Any
) -> Any:
    import martlet

    from martlet_train import objectives

    options = option_values(config, record)  # exactly the options its record declares
    if record.inputs == "rewards":
        return objectives.RewardObjective(loss, options)
    if record.inputs == "logits":
        teacher, teacher_tokenizer = martlet.load_model(
            config.teacher_model, **_lm_load_options(config)
        )
        _check_same_vocabulary(tokenizer, teacher_tokenizer, config.teacher_model)
        return objectives.DistillObjective(
            loss,
            options,
            teacher=teacher,
            lmbda=config.lmbda,
            sft_alpha=config.sft_alpha,
            generation={
                "max_new_tokens": config.max_completion_length,
                "temperature": float(options.get("temperature", 1.0)),
            },
            tokenizer=tokenizer,
            collate=collate,
            seed=config.seed,
        )
    reference = None
    if record.reference and not config.reference_free:
        reference = objectives.Reference(_reference_model(config, model))
    if record.data == "kto":
        return objectives.KtoObjective(loss, options, reference)  # type: ignore[arg-type]
    return objectives.PreferenceObjective(
        loss, options, reference=reference, reference_free=config.reference_free
    )


def _reference_model(config: RlhfConfig, policy: Any) -> Any:
    """A separate reference model, or None where the policy's disabled adapter serves."""
    import martlet

    if config.ref_model:
        ref, _ = martlet.load_model(config.ref_model, **_lm_load_options(config))
        return ref
    if hasattr(policy, "disable_adapter"):
        return None
    # full fine-tuning (or a tuner without an off switch): a frozen copy of the base model
    ref, _ = martlet.load_model(config.model, **_lm_load_options(config))
    return ref


def _check_same_vocabulary(student: Any, teacher: Any, name: str) -> None:
    if student.get_vocab() != teacher.get_vocab():
        raise ConfigError(
            f"the teacher {name} has another vocabulary than the student",
            why="distillation compares their distributions token by token",
            fix="choose a teacher of the same model family (same tokenizer)",
        )


def precompute_reference(
    objective: Any, model: Any, rows: list[dict[str, Any]], collate: Any, config: Any, acc: Any
) -> None:
    """Store each row's reference log-probs in ``row["reference_logps"]``."""
    import torch

    from martlet_train.loop import to_device

    model.eval()
    size = config.per_device_eval_batch_size
    with torch.no_grad():
        for i in range(0, len(rows), size):
            part = rows[i : i + size]
            batch = to_device(collate(part), acc.device)
            with acc.autocast():
                ref = objective.reference_logps(model, batch)
            for row, values in zip(part, ref.double().tolist(), strict=True):
                row["reference_logps"] = values
    model.train()


class RlhfCollator:
    """Pads rows with the base collator; adds the KTO ``kl_`` side and precomputed
    ``reference_logps``."""

    def __init__(self, base: Any) -> None:
        self.base = base

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        extra = ("kl_input_ids", "kl_attention_mask", "kl_labels", "reference_logps")
        batch = self.base([{k: v for k, v in r.items() if k not in extra} for r in rows])
        if "kl_input_ids" in rows[0]:
            kl = self.base(
                [
                    {
                        "input_ids": r["kl_input_ids"],
                        "attention_mask": r["kl_attention_mask"],
                        "labels": r["kl_labels"],
                    }
                    for r in rows
                ]
            )
            for key in ("input_ids", "attention_mask", "labels"):
                batch[f"kl_{key}"] = kl[key]
        if "reference_logps" in rows[0]:
            batch["reference_logps"] = torch.tensor(
                [r["reference_logps"] for r in rows], dtype=torch.float64
            )
        return batch
