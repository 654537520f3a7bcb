"""The command line each tab's action is: built from the form's values first, shown, then run
as it is.

Each tab has one function from its form (a plain dataclass of widget values) to the argv of
the ``martlet`` command that does the same in a terminal (:func:`train_argv`,
:func:`chat_argv`, :func:`eval_argv`, :func:`export_argv`); :func:`shell` writes it for copying,
and :mod:`martlet_webui.jobs` runs exactly that argv (``martlet`` being the console script of
this environment, :func:`program`). Values the user left at the command's default are left
out, as a user typing the command would; the names that identify the work (model, data, tuner,
output folder) are always written.
"""

from __future__ import annotations

import dataclasses
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from martlet.errors import ConfigError

from martlet_webui import catalog
from martlet_webui.forms import changed_flags, fields_of

MARTLET = "martlet"

#: the training options the Train tab shows first (those the command has), in this order
MAIN_TRAIN = (
    "num_train_epochs",
    "max_steps",
    "learning_rate",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "max_length",
    "lr_scheduler_type",
    "logging_steps",
    "save_steps",
)
#: the options of ``martlet eval`` the Evaluate tab shows (those the command has)
MAIN_EVAL = ("limit", "num_fewshot", "apply_chat_template", "batch_size")
#: the options of ``martlet export`` the Export tab shows besides the quantizer
MAIN_EXPORT = ("quant_bits", "overwrite")
#: the generation settings of the Chat tab, as ``martlet infer`` names them
GENERATION = ("max_new_tokens", "temperature", "top_p")


def shell(argv: Sequence[str]) -> str:
    """``argv`` as one line to paste into a POSIX shell."""
    return shlex.join(argv)


def program() -> list[str]:
    """How to run ``martlet`` from this UI: the console script of this Python environment
    (where the UI's own plugins are installed), else the same entry point through this
    interpreter."""
    script = Path(sys.executable).with_name(MARTLET)
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from martlet.cli import main; sys.exit(main())"]


def runnable(argv: Sequence[str]) -> list[str]:
    """What is executed for ``argv`` (which starts with ``martlet``): the same arguments, with
    ``martlet`` spelled as :func:`program` finds it."""
    if not argv or argv[0] != MARTLET:
        raise ValueError(f"not a martlet command line: {argv!r}")
    return [*program(), *argv[1:]]


def with_plugins(argv: Sequence[str], files: Sequence[str]) -> list[str]:
    """``argv`` with ``--plugin FILE`` for each local plugin file the UI itself was started
    with (``martlet --plugin acme.py web-ui``): the command then has the same records."""
    out = [argv[0]]
    for file in files:
        out += ["--plugin", file]
    return out + list(argv[1:])


def split(argv: Sequence[str]) -> tuple[str, list[str]]:
    """``(command, its arguments)`` of a ``martlet`` command line (``--plugin FILE`` before
    the command skipped)."""
    i = 1
    while i < len(argv) and argv[i] == "--plugin":
        i += 2
    if i >= len(argv):
        raise ConfigError(f"no command in {shell(argv)!r}")
    return argv[i], list(argv[i + 1 :])


def extra_words(text: str) -> list[str]:
    """The "more flags" box: shell words, as a terminal would split them.

    Raises:
        ConfigError: unbalanced quotes.
    """
    try:
        return shlex.split(text or "")
    except ValueError as exc:
        raise ConfigError(
            f"the extra flags {text!r} do not split into words",
            why=str(exc),
            fix="close the quote, as in a terminal",
        ) from None


def config_class(command: str) -> type:
    """The config class of ``martlet COMMAND``.

    Raises:
        MartletError: the command is not installed (the registry's error: what to install).
    """
    cls = catalog.config_class(command)
    if cls is None:
        catalog.registry().get("commands", command)  # the helpful error, when it is missing
        raise ConfigError(
            f"martlet {command} takes no form",
            why="its options are not declared as a config dataclass",
            fix=f"run `martlet {command}` in a terminal",
        )
    return cls


def check_argv(argv: Sequence[str]) -> Any:
    """Parse ``argv`` as the command itself will, and build its config (nothing loads): a
    mistake in the form is the command's own error, at once instead of in the job's log.

    Returns the config. Raises :class:`~martlet.errors.ConfigError` (or the registry's error
    for a command that is not installed).
    """
    from martlet.config import build, parse_flags

    command, args = split(argv)
    cls = config_class(command)
    parsed = parse_flags(cls, args)
    return build(cls, file=parsed.config_file, flags=parsed.values)


# ------------------------------------------------------------------------------ train


@dataclasses.dataclass
class TrainForm:
    """The Train tab's values.

    Attributes:
        command: the training command (``sft``, ``pt``, ``rlhf``, a plugin's).
        model, datasets, tuner, output_dir: what to train, on what, how and where.
        objective: the loss record the command's loss selector names (``--loss`` for sft
            and pt, ``--method`` for rlhf); empty: the command's default.
        options: widget values of the command's own options shown, by option name.
        record_options: widget values of the chosen tuner's and objective's own options.
        extra: more flags, in shell syntax, appended as typed.
    """

    command: str = "sft"
    model: str = ""
    datasets: Sequence[str] = ()
    tuner: str = ""
    objective: str = ""
    output_dir: str = ""
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    record_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    extra: str = ""


def train_record_groups(command: str) -> list[catalog.OptionGroup]:
    """The option groups of the tuners and losses ``martlet COMMAND`` can select (each
    record's own options, less the command's)."""
    cls = config_class(command)
    from martlet.config import specs

    own = set(specs(cls))
    groups = catalog.option_groups("tuners", exclude=own)
    objective = catalog.selector(cls, "losses")
    if objective is not None:
        groups += catalog.option_groups("losses", exclude=own, where=objective.spec)
    return groups


def train_argv(form: TrainForm) -> list[str]:
    """``martlet COMMAND --model M --dataset D... --tuner T [--loss|--method L] --output-dir
    DIR`` and the changed options: the command line the Train tab runs.

    Raises:
        MartletError: the command is not installed, or a value does not fit its option.
    """
    cls = config_class(form.command)
    argv = [MARTLET, form.command]
    if form.model.strip():
        argv += ["--model", form.model.strip()]
    datasets = [d.strip() for d in form.datasets if d and d.strip()]
    if datasets:
        argv += ["--dataset", *datasets]
    tuner = catalog.selector(cls, "tuners")
    if tuner is not None and form.tuner:
        argv += [tuner.flag, form.tuner]
    objective = catalog.selector(cls, "losses")
    if objective is not None and form.objective:
        argv += [objective.flag, form.objective]
    if form.output_dir.strip():
        argv += ["--output-dir", form.output_dir.strip()]
    argv += changed_flags(fields_of(cls, names=list(form.options)), form.options)
    records = catalog.chosen_fields(train_record_groups(form.command), [form.tuner, form.objective])
    argv += changed_flags(records, form.record_options)
    return argv + extra_words(form.extra)


# ------------------------------------------------------------------------------- chat


def chat_argv(model: str, adapters: str, generation: Mapping[str, Any]) -> list[str]:
    """``martlet infer --model M`` (or ``--adapters RUN``) with the generation settings: the
    terminal chat that answers as the Chat tab does."""
    argv = [MARTLET, "infer"]
    if adapters.strip():
        argv += ["--adapters", adapters.strip()]
    elif model.strip():
        argv += ["--model", model.strip()]
    for name in GENERATION:
        if generation.get(name) is not None:
            argv += ["--" + name.replace("_", "-"), _number(generation[name])]
    return argv


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# ------------------------------------------------------------------------------- eval


@dataclasses.dataclass
class EvalForm:
    """The Evaluate tab's values: a model or a run, tasks, the eval options shown (widget
    values by option name), the chosen tasks' own options, more flags."""

    model: str = ""
    adapters: str = ""
    tasks: Sequence[str] = ()
    output_dir: str = ""
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    task_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    extra: str = ""


def eval_task_groups() -> list[catalog.OptionGroup]:
    """The option groups of the installed eval tasks (less ``martlet eval``'s own)."""
    from martlet.config import specs

    own = set(specs(config_class("eval")))
    return catalog.option_groups("eval_tasks", exclude=own)


def eval_argv(form: EvalForm) -> list[str]:
    """``martlet eval --model M [--adapters RUN] --tasks a,b --output-dir DIR`` and the
    changed options: the command line the Evaluate tab runs."""
    cls = config_class("eval")
    argv = [MARTLET, "eval"]
    if form.model.strip():
        argv += ["--model", form.model.strip()]
    if form.adapters.strip():
        argv += ["--adapters", form.adapters.strip()]
    tasks = [t.strip() for t in form.tasks if t and t.strip()]
    if tasks:
        argv += ["--tasks", ",".join(tasks)]
    if form.output_dir.strip():
        argv += ["--output-dir", form.output_dir.strip()]
    argv += changed_flags(fields_of(cls, names=list(form.options)), form.options)
    argv += changed_flags(catalog.chosen_fields(eval_task_groups(), tasks), form.task_options)
    return argv + extra_words(form.extra)


# ----------------------------------------------------------------------------- export


@dataclasses.dataclass
class ExportForm:
    """The Export tab's values: the run, the folder, merge or not, a quantizer and its own
    options, the export options shown (widget values by option name), more flags."""

    adapters: str = ""
    output_dir: str = ""
    merge_lora: bool = True
    quant_method: str = ""
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    quant_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    extra: str = ""


def export_quantizers() -> list[str]:
    """The quantizers that can quantize while exporting (their records' ``stages`` include
    ``export``)."""
    return [
        r.name
        for r in catalog.registry().records("quantizers")
        if "export" in getattr(r, "stages", ())
    ]


def export_quant_groups() -> list[catalog.OptionGroup]:
    from martlet.config import specs

    own = set(specs(config_class("export")))
    groups = catalog.option_groups("quantizers", exclude=own)
    allowed = set(export_quantizers())
    return [g for g in groups if allowed & set(g.records)]


def export_argv(form: ExportForm) -> list[str]:
    """``martlet export --adapters RUN [--merge-lora] [--quant-method Q] --output-dir DIR``
    and the changed options: the command line the Export tab runs."""
    cls = config_class("export")
    argv = [MARTLET, "export"]
    if form.adapters.strip():
        argv += ["--adapters", form.adapters.strip()]
    if form.merge_lora:
        argv += ["--merge-lora"]
    if form.quant_method:
        argv += ["--quant-method", form.quant_method]
    if form.output_dir.strip():
        argv += ["--output-dir", form.output_dir.strip()]
    argv += changed_flags(fields_of(cls, names=list(form.options)), form.options)
    if form.quant_method:
        fields = catalog.chosen_fields(export_quant_groups(), [form.quant_method])
        argv += changed_flags(fields, form.quant_options)
    return argv + extra_words(form.extra)
