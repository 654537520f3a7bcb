"""``martlet sft`` and ``martlet pt``: from a config to a trained run directory.

    config ──> model + tokenizer (martlet.load_model) ──> template (martlet.load_template)
           ──> rows (martlet-data) ──> encoded, packed or padded batches
           ──> tuner.prepare ──> Trainer ──> OUTPUT_DIR

The run directory is self-describing: ``config.yaml`` (the resolved options), ``plugins.lock.json``
(every plugin and version used), the trained weights in safetensors, the tokenizer,
``trainer_state.json``, ``metrics.jsonl`` and ``loss.png``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from martlet.config import build, option, to_yaml
from martlet.errors import ConfigError, MartletError
from martlet.options import ModelOptions, QuantizeOptions, TemplateOptions

from martlet_train.datasets import TrainDataOptions
from martlet_train.loop import TrainResult
from martlet_train.options import LaunchOptions, TrainOptions


@dataclass(kw_only=True)
class TrainJobConfig(
    ModelOptions, QuantizeOptions, TemplateOptions, TrainDataOptions, TrainOptions, LaunchOptions
):
    """What every training command takes (``sft``, ``pt``, ``rlhf``)."""

    tuner: str = option(
        "lora",
        help="How the weights are trained (`martlet plugins --kind tuners` describes each; "
        "`martlet sft --tuner NAME --help` shows its options).",
        aliases=("train_type", "tuner_type", "peft_type", "tuner_backend_type"),
        names_of="tuners",
    )

    fallback_on_cpu: bool = option(
        True, help="When the chosen accelerator is missing, train on the CPU instead of failing."
    )
    half_precision_backend: str = option(
        "auto",
        help="transformers' option: auto or amp (PyTorch's autocast, Martlet's only backend); "
        "anything else is an error.",
    )


@dataclass(kw_only=True)
class SftConfig(TrainJobConfig):
    """Every option of ``martlet sft`` / ``martlet pt``."""

    loss: str = option(
        "",
        help="The loss: a loss record called with the model and a batch (empty: the "
        "command's own, sft or pt), a plugin's included; `martlet sft --loss NAME --help` "
        "shows its options.",
        aliases=("loss_name",),
        names_of="losses",
        where={"inputs": "batch"},
    )


def _require(kind: str, name: str) -> Any:
    """The record of ``name``; a missing package it needs is an error now, saying what to
    install, rather than after the model has loaded."""
    from martlet.manager import get_manager

    record = get_manager().registry.get(kind, name)
    if record.missing_requirements():
        record.load()  # raises MissingDependencyError with the pip command
    return record


def loss_record(config: Any, objective: str) -> Any:
    """The loss record ``--loss`` names (the command's own, ``sft`` or ``pt``, when empty);
    one that is not called with a model and a batch is an error saying where it trains."""
    name = getattr(config, "loss", "") or objective
    record = _require("losses", name)
    if record.inputs != "batch":
        raise ConfigError(
            f"--loss {name}: {record.label} {record.name!r} is not a supervised loss",
            why=f"it is called with {record.inputs}, not with the model and a batch",
            fix=f"train it with `martlet rlhf --method {record.name}`",
        )
    return record


def loss_function(config: Any, objective: str) -> Any:
    """What the loop calls for a micro-batch's loss: None for the built-in cross-entropy, else
    the ``--loss`` record's function with exactly its record's options
    (:class:`~martlet_train.losses.BoundLoss`)."""
    from martlet.compose import option_values

    from martlet_train.losses import BoundLoss

    record = loss_record(config, objective)
    if record.impl == "martlet_train.losses:causal_lm_loss" and not record.options:
        return None
    return BoundLoss(record.load(), option_values(config, record), record.name)


def check(config: SftConfig) -> None:
    """Resolve every name the run will need before any model or data is loaded, so a typo or a
    missing plugin fails in a second, not after the model has loaded."""
    from martlet.providers import PROVIDERS
    from martlet.records import normalize

    tuner = normalize(config.tuner)
    if tuner in PROVIDERS["parallel_strategies"]:
        raise ConfigError(
            f"{config.tuner!r} is a parallel strategy, not a tuner",
            why="ms-swift's --train_type names the tuner (lora, full, ...)",
            fix=f"pass --tuner lora (or full, ...); {tuner} comes with "
            f"{PROVIDERS['parallel_strategies'][tuner]} (its training is not wired in yet)",
        )
    _require("tuners", config.tuner)
    if getattr(config, "loss", ""):
        loss_record(config, "sft")
    if config.quant_method:  # installed, loads at this width here: before anything loads
        from martlet.quantize import chosen

        chosen(config.quant_method, config.quant_bits, stage="load")
    if str(config.half_precision_backend).lower() not in ("auto", "amp", "cpu_amp", "cuda_amp"):
        raise ConfigError(
            f"--half-precision-backend {config.half_precision_backend} is not available",
            why="Martlet's mixed precision is PyTorch's autocast (amp) on every device",
            fix="leave it out (or auto), and choose the precision with --mixed-precision",
        )
    for name in config.report_to:
        if name.lower() not in ("none", ""):
            _require("callbacks", name)
    check_parallel(config)
    _activation_setting(config)  # a bad size fails now, not after the model has loaded
    if config.packing and not config.max_length:
        raise ConfigError("--packing needs --max-length", fix="e.g. --max-length 2048")
    config.check_values()
    if config.template:  # a misspelt template fails now, not after the model has loaded
        _require("templates", config.template)
    for kind, name in (
        ("model_loaders", config.model_loader),
        ("dataset_sources", config.dataset_source),
    ):
        if name and name != "auto":
            _require(kind, name)
    check_tuner = getattr(_require("tuners", config.tuner).load()(), "check", None)
    if check_tuner is not None:
        check_tuner(config)
    from martlet_train.rundir import check_writable

    check_writable(config.output_dir)
    if config.resume_from_checkpoint and config.resume_from_checkpoint != "auto":
        from martlet_train.checkpoint import resolve_resume

        resolve_resume(config.resume_from_checkpoint, config.output_dir)  # a checkpoint?
    choose_device(config)
    from martlet.kernels import chosen

    device, dtype = kernel_target(config)
    chosen(config.kernels, device=device, dtype=dtype)  # a misspelt or misplaced kernel fails now


def parallel_name(config: Any, world_size: int | None = None) -> str | None:
    """The parallel strategy a run uses: ``--parallel``, else ``ddp`` on more than one
    process, else none (one process, no strategy)."""
    world = config.world_size if world_size is None else world_size
    return getattr(config, "parallel", None) or ("ddp" if world > 1 else None)


def check_parallel(config: Any) -> None:
    """Process counts in range; the strategy installed and willing (its optional ``check``)."""
    config.check_launch()
    name = parallel_name(config)
    if name is None:
        return
    record = _require("parallel_strategies", name)
    check_strategy = getattr(record.load(), "check", None)
    if check_strategy is not None:
        check_strategy(config)


def prepare_output_dir(config: SftConfig) -> Path:
    """The run directory, ready for this run (:func:`martlet_train.rundir.prepare`)."""
    from martlet_train import rundir

    return rundir.prepare(config)


def write_run_files(config: SftConfig, out: Path, objective: str) -> None:
    """``config.yaml`` and ``plugins.lock.json``: what a run directory says about itself."""
    from martlet.manager import get_manager

    (out / "config.yaml").write_text(
        f"# martlet {objective}: the resolved options of this run\n{to_yaml(config)}",
        encoding="utf-8",
    )
    plugins = [
        {
            k: v
            for k, v in info.to_dict().items()
            if k in ("name", "distribution", "version", "status")
        }
        for info in get_manager().plugins
    ]
    (out / "plugins.lock.json").write_text(json.dumps(plugins, indent=2))


@dataclass
class Job:
    """What every training command (``sft``, ``pt``, ``rlhf``) sets up before its data and
    objective: the run directory, the accelerator, the model, its tokenizer and template."""

    config: Any
    out: Path
    accelerator: Any
    model: Any
    tokenizer: Any
    template: Any
    budget: Any = None  #: the activation budget, once the model is prepared
    #: the kernels switched into the prepared model (``--kernels``), until it closes
    kernels: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)


def start(config: Any, label: str) -> Job:
    """Seed, create the run directory (``config.yaml``, ``plugins.lock.json``), choose the
    device and the precision, load the model, tokenizer and template."""
    import martlet

    _seed(config)
    out = prepare_output_dir(config)
    precision = resolve_precision(config)
    accelerator = _accelerator(config)
    if accelerator.is_main_process:
        write_run_files(config, out, label)
        print(precision.describe(), flush=True)
        from martlet.precision import emulation_warning

        warning = emulation_warning(precision)
        if warning:
            print(warning, flush=True)
    model, tokenizer = martlet.load_model(config.model, **_load_options(config))
    if config.quant_method and config.quant_report and accelerator.is_main_process:
        from martlet.quality import reference_of, report

        report(
            model,
            tokenizer,
            method=config.quant_method,
            bits=config.quant_bits,
            out_dir=out,
            reference=reference_of(config.model, **config.loader_options()),
        )
    template = martlet.load_template(tokenizer, config.template, **config.template_options())
    return Job(config, out, accelerator, model, tokenizer, template)


def precision_of(config: Any) -> Any:
    """What ``auto`` in ``--mixed-precision`` and ``--torch-dtype`` means for this run, from
    the device's accelerator record (:mod:`martlet.precision`); ``config`` is not changed."""
    from martlet.precision import resolve

    tuner = _require("tuners", config.tuner)
    return resolve(
        device=config.device,
        mixed_precision=config.mixed_precision,
        torch_dtype=config.torch_dtype,
        trains_weights="adapter" not in tuner.capabilities,
    )


def resolve_precision(config: Any) -> Any:
    """Replace ``auto`` in ``--mixed-precision`` and ``--torch-dtype`` by
    :func:`precision_of`'s choice, so ``config.yaml`` records the resolved values; returns the
    :class:`~martlet.precision.Precision`."""
    precision = precision_of(config)
    config.mixed_precision = precision.mixed_precision
    config.torch_dtype = precision.torch_dtype
    return precision


def kernel_target(config: Any) -> tuple[str, str]:
    """The device type and compute dtype a run's kernels are chosen for
    (:func:`martlet.kernels.chosen`)."""
    from martlet.precision import MIXED

    precision = precision_of(config)
    return precision.device, MIXED.get(precision.mixed_precision) or precision.torch_dtype


def prepare_model(job: Job) -> Any:
    """Activation checkpointing or the activation budget, and the tuner: ``job.model`` becomes
    the model to train; returns the tuner."""
    from martlet_train import memory

    config = job.config
    if config.gradient_checkpointing or config.selective_checkpointing:
        memory.enable(job.model, selective=not config.gradient_checkpointing)
    else:
        limit = activation_limit(config, job.model)
        if limit is not None:
            job.budget = memory.ActivationBudget(job.model, limit)
    tuner = _require("tuners", config.tuner).load()()
    job.model = tuner.prepare(job.model, config)
    _report_trainable(job.model, job.accelerator)
    _apply_kernels(job)
    return tuner


def _apply_kernels(job: Job) -> None:
    """Switch the kernels of ``--kernels`` into the prepared model (and let them offer their
    operations, :mod:`martlet.kernels`) until ``job.kernels`` closes."""
    from martlet.kernels import applied

    device, dtype = kernel_target(job.config)
    used = job.kernels.enter_context(
        applied(job.model, job.config.kernels, device=device, dtype=dtype)
    )
    if job.accelerator.is_main_process and any(used.values()):
        named = ", ".join(
            f"{name} ({n} layer{'s' if n != 1 else ''})" for name, n in used.items() if n
        )
        print(f"kernels: {named}", flush=True)


def _activation_setting(config: Any) -> int | str | None:
    """``--max-activation-memory`` read: bytes, ``"auto"``, or None (no budget)."""
    from martlet_train.memory import parse_size

    value = str(getattr(config, "max_activation_memory", "none")).strip().lower()
    if value in ("none", "off", "no", "0", ""):
        return None
    if value == "auto":
        return value
    size = parse_size(value)
    if size <= 0:
        raise ConfigError(
            f"--max-activation-memory must be a positive size, not {value!r}",
            fix="e.g. --max-activation-memory 512MB, or auto, or none",
        )
    return size


def activation_limit(config: Any, model: Any) -> int | None:
    """Bytes of ``--max-activation-memory`` (``auto``: a third of the model's weights), or
    None."""
    setting = _activation_setting(config)
    if setting == "auto":  # the bytes the weights hold (a quantized model's packed ones)
        from martlet.quantize import weight_bytes

        return weight_bytes(model) // 3
    return setting


def fit(
    job: Job,
    tuner: Any,
    *,
    train: list[dict[str, Any]],
    val: list[dict[str, Any]],
    collate: Any,
    loss_fn: Any = None,
) -> TrainResult:
    """Run the training loop on encoded rows and say where the run was saved."""
    from martlet_train.loop import Trainer

    extra = {"loss_fn": loss_fn} if loss_fn is not None else {}
    trainer = Trainer(
        job.model,
        tuner,
        job.config,
        train_rows=train,
        eval_rows=val,
        collate=collate,
        tokenizer=job.tokenizer,
        callbacks=_callbacks(job.config),
        accelerator=job.accelerator,
        activation_budget=job.budget,
        **extra,
    )
    try:
        with job.kernels:  # the model gets its own layers back after the run
            result = trainer.train()
    finally:
        if job.budget is not None:
            job.budget.release()
    if job.accelerator.is_main_process:
        summary = ", ".join(f"{k}={v:.4g}" for k, v in result.metrics.items())
        print(f"run saved to {job.out} ({summary})", flush=True)
    return result


def run(config: SftConfig | Mapping[str, Any], objective: str = "sft") -> TrainResult:
    """Train; the Python form of ``martlet sft`` (``objective="pt"`` for ``martlet pt``)."""
    from martlet_train.datasets import load_train_val

    if not isinstance(config, SftConfig):
        config = build(SftConfig, values=dict(config))
    if getattr(config, "task_type", "causal_lm") != "causal_lm":
        raise ConfigError(
            f"`martlet {objective}` trains language models, not --task-type {config.task_type}",
            fix="train a reward model (a scalar head) with `martlet rlhf --method rm`",
        )
    check(config)
    from martlet_train import launch

    if launch.wanted(config):  # several processes: this one starts them and waits
        launch.launch(config, objective)
        return launch.finished_result(config)
    train_rows, val_rows = load_train_val(config)  # bad or empty data fails before the model loads
    job = start(config, objective)
    train = _encode(train_rows, job.template, job.tokenizer, config, objective)
    val = _encode(val_rows, job.template, job.tokenizer, config, objective) if val_rows else []
    loss_fn = loss_function(config, objective)
    if config.packing:
        from martlet_train.batching import pack_rows

        train = pack_rows(train, config.max_length)
        val = pack_rows(val, config.max_length) if val else val
    tuner = prepare_model(job)
    with job.kernels:  # fit closes it; this, should anything fail before
        by_segment = job.kernels.enter_context(_by_segment(job))
        collate = _collator(config, job.tokenizer, job.model, by_segment=by_segment)
        return fit(job, tuner, train=train, val=val, collate=collate, loss_fn=loss_fn)


@contextlib.contextmanager
def _by_segment(job: Job) -> Iterator[bool]:
    """For packed or padding-free batches, the model attends segment by segment inside each
    row while active, where a kernel offers it (the ``segment_attention`` operation of
    :data:`martlet.kernels.OPS`); yields whether it does (else the collator builds a
    block-diagonal mask)."""
    from martlet.kernels import provided

    segment = provided(job.model, "segment_attention")
    if not (job.config.packing or job.config.padding_free) or segment is None:
        yield False
        return
    with segment(job.model) as switched:
        if switched and job.accelerator.is_main_process:
            print("attention: segment by segment inside packed rows (--kernels)", flush=True)
        yield bool(switched)


def sft(config: SftConfig | Mapping[str, Any]) -> TrainResult:
    """Supervised fine-tuning: loss on the assistant tokens of chat rows."""
    return run(config, "sft")


def pt(config: SftConfig | Mapping[str, Any]) -> TrainResult:
    """Continued pre-training: loss on every token."""
    return run(config, "pt")


# ------------------------------------------------------------------------- pieces


def _seed(config: Any) -> None:
    """Seed Python, NumPy and torch, and the run's device kind through its accelerator."""
    from martlet.devices import place
    from transformers import set_seed

    set_seed(config.seed)
    place(config.device).seed(config.seed)


def choose_device(config: Any) -> None:
    """Resolve ``--device`` through the accelerator records before anything loads
    (:func:`martlet.devices.place`): an unknown or missing device is an error or, with
    ``--fallback-on-cpu``, a warning and the CPU. ``config.device`` becomes the choice
    (recorded in ``config.yaml``), or stays empty for the best available."""
    from martlet.devices import place

    requested = (config.device or "").strip()
    placement = place(requested, fallback_on_cpu=config.fallback_on_cpu)
    config.device = placement.spec if requested.lower() not in ("", "auto") else None


def _accelerator(config: SftConfig) -> Any:
    from martlet_train.loop import make_accelerator

    return make_accelerator(config)


def _load_options(config: SftConfig) -> dict[str, Any]:
    return {**config.loader_options(), **config.quant_options()}


def _encode(
    rows: Any, template: Any, tokenizer: Any, config: SftConfig, objective: str
) -> list[dict[str, Any]]:
    from martlet.examples import encode_rows

    result = encode_rows(
        rows,
        template,
        tokenizer=tokenizer,
        max_length=config.max_length,
        on_bad_rows=getattr(config, "on_bad_rows", "error"),
    )
    encoded = list(result)
    if objective == "pt":  # every token is a target
        for row in encoded:
            row["labels"] = list(row["input_ids"])
    if not encoded:
        stats = result.stats
        why = (
            f"all {stats.rows} rows were dropped: "
            f"{stats.deleted['longer than max_length']} longer than --max-length "
            f"{config.max_length}, {stats.deleted['no target tokens']} with no target tokens"
            if stats.rows
            else "the dataset gave no rows"
        )
        raise MartletError(
            "no rows left to train on after encoding",
            why=why,
            fix="raise --max-length, use --truncation-strategy left|right, or check the data",
        )
    return encoded


def _collator(config: SftConfig, tokenizer: Any, model: Any, *, by_segment: bool = False) -> Any:
    """The batch collator: padded rows; a micro-batch's rows as one row (``--padding-free``,
    where the model attends segment by segment: ``by_segment``, :func:`_by_segment`); or
    packed rows with ``position_ids`` only (the same) or with a block-diagonal 4D mask."""
    from martlet_train.batching import PackedCollator, PaddingCollator, PaddingFreeCollator

    pad = tokenizer.pad_token_id
    if pad is None:
        pad = tokenizer.eos_token_id
    if not config.packing:
        return PaddingFreeCollator(pad) if by_segment else PaddingCollator(pad)
    if by_segment:
        return PackedCollator(pad, mask="position_ids")
    return PackedCollator(pad, dtype=next(model.parameters()).dtype)


def _callbacks(config: SftConfig) -> list[Any]:
    from martlet.compose import option_values

    out = []
    for name in config.report_to:
        if name.lower() in ("none", ""):
            continue
        record = _require("callbacks", name)
        out.append(record.load()(output_dir=config.output_dir, **option_values(config, record)))
    return out


def _report_trainable(model: Any, accelerator: Any) -> None:
    if not accelerator.is_main_process:
        return
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    print(
        f"trainable parameters: {trainable:,} of {total:,} ({100 * trainable / total:.3f}%)",
        flush=True,
    )
