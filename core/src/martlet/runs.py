"""Reading a training run back from its directory alone.

A run directory (what ``martlet sft`` writes) holds ``config.yaml`` — the fully resolved options,
including the base ``model``, the ``tuner`` and the ``template`` — next to the trained weights.
``infer``, ``export``, ``deploy`` and ``eval`` take ``--adapters DIR`` (or ``--model DIR``) and
find everything else here. A ``checkpoint-N`` folder inside a run works too: its config is the
run's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from martlet.errors import MartletError, brief

CONFIG = "config.yaml"


@dataclass
class Run:
    """A run directory and its resolved config."""

    path: Path
    config: dict[str, Any]

    @property
    def model(self) -> str:
        """The base model the run trained."""
        return str(self.config["model"])

    @property
    def tuner(self) -> str:
        """The tuner the run trained with (``tuner:`` in its config.yaml).

        Raises:
            MartletError: the config names none.
        """
        from martlet.config import selection

        name = selection(self.config, "tuner")
        if not name:
            raise MartletError(
                f"{self.path / CONFIG} names no tuner",
                why="a run directory says how it was trained: martlet sft writes `tuner:`",
                fix="add `tuner: NAME` (the --tuner of that run, e.g. lora) to it",
            )
        return name

    @property
    def template(self) -> str | None:
        from martlet.config import selection

        return selection(self.config, "template")

    def template_options(self) -> dict[str, Any]:
        """The chat-template options the run trained with (``system``, and a plugin
        template's own options)."""
        from martlet.config import selected_options

        options = {k: self.config[k] for k in ("system",) if self.config.get(k) is not None}
        return {**options, **selected_options(self.config, "template")}

    def answered_with(
        self, template: str | None, options: dict[str, Any], system: str | None
    ) -> tuple[str | None, dict[str, Any]]:
        """The chat template a command answers this run with, and its options: the command's
        ``template`` (``--template``) with ``options``, else the run's own with the options it
        trained with; the run's system prompt unless the command's ``system`` replaces it."""
        out = dict(options)
        trained = self.template_options()
        trained_system = trained.pop("system", None)
        if trained_system is not None and system is None:
            out["system"] = trained_system
        if template:
            return template, out
        out.update(trained)
        return self.template, out

    def loader_options(self) -> dict[str, Any]:
        """The model loader the run named with ``--model-loader`` and its options (``{}``
        when the loader was chosen automatically): what loads its base model again."""
        from martlet.config import selected_options, selection

        loader = selection(self.config, "model_loader", "auto")
        if loader == "auto":
            return {}
        return {"loader": loader, **selected_options(self.config, "model_loader")}

    def quantization(self) -> dict[str, Any]:
        """How the run's base model was quantized as it loaded (``--quant-method``, QLoRA):
        the :func:`martlet.load_model` options that load it the same way again (``{}``: not
        quantized)."""
        from martlet.config import selected_options, selection

        method = selection(self.config, "quant_method")
        if not method:
            return {}
        return {
            "quant_method": method,
            "quant_bits": self.config.get("quant_bits"),
            "quant_options": selected_options(self.config, "quant_method"),
        }


def is_run(path: str | Path) -> bool:
    """Whether ``path`` is a run directory or a checkpoint inside one."""
    p = Path(path)
    return (p / CONFIG).is_file() or (p.parent / CONFIG).is_file()


def read_run(path: str | Path) -> Run:
    """The run at ``path`` (a run directory or one of its checkpoints).

    Raises:
        MartletError: no ``config.yaml`` there (nor in the parent, for a checkpoint), or it
            names no base model.
    """
    import yaml

    folder = Path(path)
    if not folder.is_dir():
        raise MartletError(f"run directory {str(path)!r} not found", fix="check the path")
    file = folder / CONFIG
    if not file.is_file() and (folder.parent / CONFIG).is_file():
        file = folder.parent / CONFIG
    if not file.is_file():
        raise MartletError(
            f"{folder} is not a Martlet run directory",
            why=f"it has no {CONFIG} (written by `martlet sft` / `pt` / `rlhf`)",
            fix="pass the output directory of a training run, or --model for a plain model",
        )
    config = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    if not config.get("model"):
        raise MartletError(f"{file} names no base model", fix="add `model: ID_OR_PATH` to it")
    return Run(folder, config)


def load_run(
    path: str | Path, *, quantized: bool = True, **load_options: Any
) -> tuple[Any, Any, Run]:
    """Load the run's base model, apply what it trained, and return ``(model, tokenizer, run)``.

    ``load_options`` go to :func:`martlet.load_model` (``torch_dtype``, ``device_map``, ...).
    A run that trained on a quantized base (QLoRA) loads on the same quantized base, unless
    ``quantized`` is False (``martlet export``: the adapter then applies to the unquantized
    weights, which it can be merged into) or ``load_options`` name another ``quant_method``.
    A run that trained a scalar head (``task_type: seq_cls``, a reward model) loads as one.
    The run's files are checked first (:func:`martlet.rundirs.check_folder`); a missing or
    damaged one, or any failure applying what the run trained, is a MartletError naming it.
    """
    from martlet import api
    from martlet.manager import get_manager
    from martlet.rundirs import check_folder, fix_for

    run = read_run(path)
    check_folder(run.path, run.tuner)  # a missing or damaged file is named, not a traceback
    options = {**run.loader_options(), **(run.quantization() if quantized else {}), **load_options}
    if not options.get("quant_method"):
        for key in ("quant_method", "quant_bits", "quant_options"):
            options.pop(key, None)
    task_type = run.config.get("task_type")
    if task_type and task_type != "causal_lm":
        options.setdefault("task_type", task_type)
        if run.config.get("num_labels"):
            options.setdefault("num_labels", run.config["num_labels"])
    model, tokenizer = api.load_model(run.model, **options)
    tuner = get_manager().registry.get("tuners", run.tuner).load()()
    try:
        return tuner.load(model, str(run.path)), tokenizer, run
    except MartletError:
        raise
    except Exception as exc:  # noqa: BLE001 - a library's failure, reported with its cause
        raise MartletError(
            f"cannot load the trained result in {run.path}",
            why=brief(exc),
            fix=fix_for(run.path),
            cause=exc,
        ) from exc
