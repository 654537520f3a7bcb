"""``martlet eval``: score a model (or a run, or an OpenAI-compatible endpoint) on benchmarks."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import click
from martlet.cli import config_command
from martlet.config import option, require
from martlet.errors import ConfigError
from martlet.options import ModelOptions, QuantizeOptions, TemplateOptions


@dataclass(kw_only=True)
class EvalConfig(ModelOptions, QuantizeOptions, TemplateOptions):
    model: str | None = option(
        None,
        help="A model id, folder, .gguf file or run directory; with --url, the served model's "
        "name (default: the first the endpoint lists).",
        aliases=("model_type", "model_id_or_path"),
        metavar="ID_OR_PATH",
    )
    adapters: str | None = option(
        None,
        help="A run directory (or checkpoint) of `martlet sft`: its base model with what it "
        "trained is scored.",
        aliases=("ckpt_dir", "adapter"),
        metavar="RUN_DIR",
    )
    tasks: list[str] = option(
        default_factory=list,
        help="The tasks to score, comma-separated: installed ones (`martlet eval --list-tasks`) "
        "or YAML task files.",
        aliases=("eval_dataset", "task"),
        names_of="eval_tasks",
        metavar="NAME",
    )
    limit: int | None = option(
        None, help="Score only the first N documents of each task.", metavar="N"
    )
    num_fewshot: int = option(0, help="Worked examples before each question.", metavar="K")
    apply_chat_template: bool = option(
        False,
        help="Render prompts through the model's chat template (few-shot examples as turns) "
        "instead of plain text.",
    )
    output_dir: str | None = option(
        None,
        help="Where results.json and samples.jsonl go (default: eval_output/TIME).",
        aliases=("output",),
    )
    url: str | None = option(
        None,
        help="Score an OpenAI-compatible endpoint instead of loading a model, e.g. "
        "http://127.0.0.1:8000/v1 (`martlet deploy`, vLLM).",
        aliases=("eval_url",),
    )
    api_key: str | None = option(
        None, help="Bearer key for --url (default: $MARTLET_API_KEY, then $OPENAI_API_KEY)."
    )
    tokenizer: str | None = option(
        None,
        help="With --url and --apply-chat-template: the tokenizer (id or folder) whose chat "
        "template renders the prompts.",
    )
    concurrency: int = option(4, help="Requests in flight at once with --url.")
    batch_size: int = option(
        8, help="Sequences per forward pass in process.", aliases=("eval_batch_size",)
    )
    seed: int = option(1234, help="Seed of the few-shot draw.")
    list_tasks: bool = option(False, help="List the installed tasks and exit.")
    json: bool = option(False, help="With --list-tasks: print JSON.")
    progress: bool = option(True, help="Show a progress bar on stderr.")

    def __post_init__(self) -> None:
        self.tasks = [t.strip() for item in self.tasks for t in str(item).split(",") if t.strip()]
        require(self.limit is None or self.limit >= 1, "limit", self.limit, "at least 1", "100")
        require(self.num_fewshot >= 0, "num-fewshot", self.num_fewshot, "0 or more", "5")
        require(self.batch_size >= 1, "batch-size", self.batch_size, "at least 1", "8")
        require(self.concurrency >= 1, "concurrency", self.concurrency, "at least 1", "4")
        parent = getattr(super(), "__post_init__", None)
        if parent is not None:
            parent()

    def loader_options(self) -> dict[str, Any]:
        """How the model loads: ``auto`` dtype resolved for inference on the CPU (or the
        device map's first device), with ``--quant-method`` applied as it loads."""
        options = {**super().loader_options(), **self.quant_options()}
        if options.get("torch_dtype") in ("auto", None):
            from martlet.precision import resolve

            device = "cpu" if self.device_map is None else None
            options["torch_dtype"] = resolve(device=device, inference=True).torch_dtype
        return options


def check(config: EvalConfig) -> None:
    """What needs no model: a task list, the tasks installed, a source of answers."""
    if config.list_tasks:
        return
    if not config.tasks:
        raise ConfigError(
            "no task to score", fix="pass --tasks NAME[,NAME...] (see martlet eval --list-tasks)"
        )
    from martlet.manager import get_manager

    from martlet_eval.tasks import is_task_file

    registry = get_manager().registry
    for name in config.tasks:
        if not is_task_file(name):
            registry.get("eval_tasks", name)  # an unknown name: the registry's error, with hints
    if config.url is None and not (config.model or config.adapters):
        raise ConfigError(
            "nothing to evaluate",
            fix="pass --model ID_OR_PATH (or a run directory), --adapters RUN_DIR, or --url URL",
        )
    if config.url and config.adapters:
        raise ConfigError(
            "--adapters loads a run here, --url scores a server",
            fix="serve the run (martlet deploy --adapters RUN) and pass --url, or drop --url",
        )


@config_command(EvalConfig, name="eval", check=check)
def eval_command(config: EvalConfig) -> None:
    """Score a model, a run or an endpoint on benchmarks (multiple choice by log-likelihood,
    generation by the final answer); writes results.json and samples.jsonl."""
    if config.list_tasks:
        list_tasks(config.json)
        return
    result = run_eval(config)
    click.echo(table(result["results"]))
    click.echo(f"results in {result['output_dir']}", err=True)


# ------------------------------------------------------------------------------ listing


def task_rows() -> list[dict[str, Any]]:
    """Every installed task: name, kind, metric, whether its data is here (offline)."""
    from martlet.manager import get_manager

    registry = get_manager().registry
    rows = []
    for record in sorted(registry.records("eval_tasks"), key=lambda r: r.name):
        rows.append(
            {
                "name": record.name,
                "kind": record.output_type,
                "metric": record.metric,
                "dataset": record.dataset,
                "offline": _offline(registry, record.dataset),
                "summary": record.summary,
                "plugin": record.origin,
            }
        )
    return rows


def _offline(registry: Any, dataset: str) -> bool:
    """Whether a dataset is on this machine: embedded in a package or a local file."""
    if Path(dataset).expanduser().exists():
        return True
    record = registry.find("datasets", dataset.split(":")[0].split("#")[0])
    return bool(record is not None and getattr(record, "path", ""))


def list_tasks(as_json: bool) -> None:
    rows = task_rows()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no eval tasks installed")
        return
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        where = "offline" if r["offline"] else "hub"
        click.echo(
            f"{r['name']:<{width}}  {r['kind']:<15}  {r['metric']:<11}  {where:<7}  {r['summary']}"
        )


# ------------------------------------------------------------------------------ running


def run_eval(config: EvalConfig) -> dict[str, Any]:
    """Do what ``martlet eval`` does; return what results.json holds (and ``output_dir``)."""
    from martlet_eval.runner import evaluate

    started = time.time()
    tasks = build_tasks(config)
    answerer, info = load_answerer(config)
    runs = []
    for name, kind, task in tasks:
        runs.append(
            evaluate(
                name,
                task,
                answerer,
                limit=config.limit,
                num_fewshot=config.num_fewshot,
                seed=config.seed,
                progress=config.progress,
                output_type=kind,
            )
        )
    out = Path(config.output_dir or _default_output()).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    results = {
        "results": {r.name: {**r.metrics, "output_type": r.output_type} for r in runs},
        "subjects": {r.name: r.subjects for r in runs if r.subjects},
        "config": _settings(config, info),
        "versions": versions(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "duration_s": round(time.time() - started, 3),
    }
    (out / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    with open(out / "samples.jsonl", "w", encoding="utf-8") as f:
        for r in runs:
            for sample in r.samples:
                f.write(json.dumps(sample, ensure_ascii=False) + "\n")
    results["output_dir"] = str(out)
    return results


def _default_output() -> str:
    return str(Path("eval_output") / datetime.now().strftime("%Y%m%d-%H%M%S"))


def build_tasks(config: EvalConfig) -> list[tuple[str, str, Any]]:
    """``(name, output_type, task)`` for each ``--tasks`` item, built with its options."""
    from martlet.compose import option_values
    from martlet.manager import get_manager

    from martlet_eval.tasks import is_task_file, load_task_file

    registry = get_manager().registry
    out = []
    for name in config.tasks:
        if is_task_file(name):
            out.append(load_task_file(name))
            continue
        record = registry.get("eval_tasks", name)
        cls = record.load()
        task = cls(dataset=record.dataset, **option_values(config, record))
        out.append((record.name, record.output_type, task))
    return out


def _api_key(config: EvalConfig) -> str | None:
    import os

    return config.api_key or os.environ.get("MARTLET_API_KEY") or os.environ.get("OPENAI_API_KEY")


def load_answerer(config: EvalConfig) -> tuple[Any, dict[str, Any]]:
    """The answerer (a model here, or the endpoint) and what identifies it in results."""
    import martlet

    from martlet_eval.models import LocalModel, RemoteModel

    if config.url:
        template, bos = None, ""
        if config.tokenizer:
            tokenizer = martlet.load_tokenizer(config.tokenizer)
            template = _template(config, tokenizer, None)
            bos = _bos(tokenizer)
        model = RemoteModel(
            config.url,
            model=config.model,
            api_key=_api_key(config),
            concurrency=config.concurrency,
            template=template,
            chat=config.apply_chat_template,
            bos=bos,
        )
        return model, {"url": config.url, "model": model.model}
    from martlet.runs import is_run, load_run

    named = config.model
    adapters = config.adapters or (named if Path(named).is_dir() and is_run(named) else None)
    run = None
    if adapters:
        model, tokenizer, run = load_run(adapters, **config.loader_options())
        info = {"model": run.model, "adapters": str(run.path)}
    else:
        model, tokenizer = martlet.load_model(config.model, **config.loader_options())
        info = {"model": config.model}
    model.eval()
    template = _template(config, tokenizer, run) if config.apply_chat_template else None
    answerer = LocalModel(
        model,
        tokenizer,
        batch_size=config.batch_size,
        max_length=config.max_length,
        template=template,
        chat=config.apply_chat_template,
        bos=_bos(tokenizer),
    )
    info["torch_dtype"] = str(next(model.parameters()).dtype).removeprefix("torch.")
    return answerer, info


def _template(config: EvalConfig, tokenizer: Any, run: Any) -> Any:
    """The chat template: --template, else the run's (with its system prompt), else auto."""
    import martlet

    name, options = config.template, config.template_options()
    options["max_length"] = None
    if run is not None:
        name, options = run.answered_with(name, options, config.system)
    return martlet.load_template(tokenizer, name, **options)


def _bos(tokenizer: Any) -> str:
    """The BOS text a plain prompt starts with: the tokenizer's, where it adds one itself."""
    bos_id, bos = getattr(tokenizer, "bos_token_id", None), getattr(tokenizer, "bos_token", None)
    if bos_id is None or not bos:
        return ""
    try:
        ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    except Exception:  # noqa: BLE001 - a tokenizer that cannot say: no BOS
        return ""
    return bos if ids and ids[0] == bos_id else ""


def _settings(config: EvalConfig, info: dict[str, Any]) -> dict[str, Any]:
    from martlet.config import to_dict

    settings = {
        k: v
        for k, v in to_dict(config).items()
        if k not in ("api_key", "list_tasks", "json", "progress")
    }
    settings.update(info)
    return settings


def versions() -> dict[str, str]:
    """The versions of Martlet's distributions and the libraries that computed the scores."""
    from importlib import metadata

    out = {}
    for dist in metadata.distributions():
        name = (dist.metadata["Name"] or "").lower()
        if name.startswith("martlet") or name in ("torch", "transformers", "peft"):
            out[name] = dist.version
    return dict(sorted(out.items()))


def table(results: dict[str, dict[str, Any]]) -> str:
    """The scores as a Markdown table: task, metric, value, documents."""
    lines = ["| task | metric | value | n |", "|---|---|---|---|"]
    for task, metrics in results.items():
        for name, value in metrics.items():
            if name in ("n", "output_type"):
                continue
            lines.append(f"| {task} | {name} | {value:.4f} | {int(metrics.get('n', 0))} |")
    return "\n".join(lines)
