"""``martlet dataset``: ``list``, ``info`` and ``prepare``."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from martlet.cli import config_command
from martlet.config import option
from martlet.errors import ConfigError, MartletError
from martlet.manager import get_manager

from martlet_data.options import DatasetReadOptions


@contextlib.contextmanager
def warnings_to_stderr() -> Iterator[None]:
    """Show martlet-data's warnings (skipped rows, truncation) on stderr while a command runs,
    whatever logging the process has set up."""
    logger = logging.getLogger("martlet.data")
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("martlet: warning: %(message)s"))
    logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


@click.group(
    name="dataset",
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
def dataset() -> None:
    """List, inspect and prepare datasets.

    A dataset is given as NAME_OR_PATH[:subset][#N]: a registered name (`martlet dataset
    list`), a local .jsonl/.json/.csv/.parquet/.txt file or folder, or a hub id (org/name,
    hf::org/name, ms::org/name). #N takes N rows.
    """


# ------------------------------------------------------------------------- list


@dataclass(kw_only=True)
class ListConfig:
    json: bool = option(False, help="Print a JSON array: one object per dataset.")
    tag: str | None = option(
        None, help="Only datasets with this tag (sft, dpo, kto, eval, pt, embedded, zh, ...)."
    )


def _where(record: Any) -> str:
    if record.path:
        return "embedded" if record.path.startswith("martlet_data:") else record.path
    short = {"huggingface": "hf", "modelscope": "ms"}
    return ", ".join(f"{short.get(h, h)}::{i}" for h, i in record.hub_ids.items())


@config_command(ListConfig, name="list")
def list_datasets(config: ListConfig) -> None:
    """List the registered datasets: name, where the data is, format and summary."""
    records = get_manager().registry.records("datasets")
    if config.tag:
        records = [r for r in records if config.tag.lower() in (t.lower() for t in r.tags)]
    if config.json:
        click.echo(
            json.dumps(
                [{**r.to_dict(), "where": _where(r)} for r in records],
                indent=2,
                ensure_ascii=False,
            )
        )
        return
    if not records:
        click.echo("no datasets" + (f" tagged {config.tag!r}" if config.tag else ""))
        return
    width = max(len(r.name) for r in records)
    for r in records:
        click.echo(f"{r.name:<{width}}  {r.summary}")
        click.echo(f"{'':<{width}}  {_where(r)}  [{r.format or 'auto'}]")


# ------------------------------------------------------------------------- info


def _spec_help(verb: str) -> str:
    return (
        f"Datasets to {verb}: NAME_OR_PATH[:subset][#N], several allowed "
        "(also --name or --dataset)."
    )


@dataclass(kw_only=True)
class InfoConfig(DatasetReadOptions):
    dataset: list[str] = option(
        default_factory=list,
        help=_spec_help("describe"),
        aliases=("name",),
        positional=True,
        metavar="SPEC",
    )
    model: str | None = option(
        None,
        help="Count tokens as this model's tokenizer and chat template encode the rows "
        "(a model id, folder or hub id; needs martlet-hf).",
        metavar="MODEL",
    )
    json: bool = option(False, help="Print the report as JSON.")


def percentile(sorted_values: list[int], q: float) -> int:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return 0
    rank = max(1, min(len(sorted_values), math.ceil(q / 100 * len(sorted_values))))
    return sorted_values[rank - 1]


def token_stats(lengths: list[int]) -> dict[str, Any]:
    values = sorted(lengths)
    if not values:
        return {"rows": 0}
    return {
        "rows": len(values),
        "total": sum(values),
        "min": values[0],
        "mean": round(sum(values) / len(values), 1),
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": values[-1],
    }


def _need_specs(config: Any) -> list[str]:
    if not config.dataset:
        raise ConfigError(
            "no dataset given",
            fix="name one: martlet dataset info sample-sft (or --name SPEC, --dataset SPEC)",
        )
    return list(config.dataset)


def describe(rows: Any, specs: list[str], model: str | None = None) -> dict[str, Any]:
    """The ``info`` report of rows already read (a list or a stream)."""
    from martlet.examples import row_kind

    kinds: Counter = Counter()
    kept = []
    count = 0
    for row in rows:
        count += 1
        kinds[row_kind(row)] += 1
        if model:
            kept.append(row)
    report: dict[str, Any] = {
        "datasets": specs,
        "rows": count,
        "formats": dict(rows.formats.most_common()),
        "kinds": dict(kinds.most_common()),
        "bad_rows": rows.report.to_dict(),
    }
    if model:
        import martlet
        from martlet.examples import encode_rows

        tokenizer = martlet.load_tokenizer(model)
        template = martlet.load_template(tokenizer)
        encoded = encode_rows(kept, template, tokenizer=tokenizer)
        lengths = [len(r["input_ids"]) for r in encoded]
        report["tokens"] = {"model": model, **token_stats(lengths)}
        report["encoding"] = encoded.stats.to_dict()
    return report


@config_command(InfoConfig, name="info")
def info(config: InfoConfig) -> None:
    """Describe datasets: rows, input formats detected, row kinds, bad rows, and token counts
    (min, mean, percentiles, max) with --model."""
    from martlet_data.loading import load_datasets

    specs = _need_specs(config)
    with warnings_to_stderr():
        rows = load_datasets(specs, **config.read_options())
        report = describe(rows, specs, config.model)
    if config.json:
        click.echo(json.dumps(report, indent=2, ensure_ascii=False))
        return
    click.echo(f"datasets:  {', '.join(specs)}")
    click.echo(f"rows:      {report['rows']}")
    click.echo("formats:   " + (", ".join(f"{k} {v}" for k, v in report["formats"].items()) or "-"))
    click.echo("kinds:     " + (", ".join(f"{k} {v}" for k, v in report["kinds"].items()) or "-"))
    skipped = report["bad_rows"]["skipped"]
    click.echo(f"bad rows:  {skipped} skipped" if skipped else "bad rows:  none")
    for reason, n in report["bad_rows"]["by_reason"].items():
        click.echo(f"  {n} {reason}: {report['bad_rows']['examples'][reason][0]}")
    if "tokens" in report:
        t = report["tokens"]
        if t["rows"]:
            click.echo(
                f"tokens:    {t['total']} in {t['rows']} rows (model {t['model']}); "
                f"min {t['min']}, mean {t['mean']}, p50 {t['p50']}, p90 {t['p90']}, "
                f"p99 {t['p99']}, max {t['max']}"
            )
        else:
            click.echo(f"tokens:    no rows could be encoded with {t['model']}")


# ------------------------------------------------------------------------- prepare


@dataclass(kw_only=True)
class PrepareConfig(DatasetReadOptions):
    dataset: list[str] = option(
        default_factory=list,
        help=_spec_help("prepare"),
        aliases=("name",),
        positional=True,
        metavar="SPEC",
    )
    output: str = option(
        help="Write the canonical rows to this .jsonl file (its folder is created).",
        metavar="FILE.jsonl",
    )


def write_jsonl(rows: Any, output: str | os.PathLike) -> int:
    """Write rows as JSON Lines, atomically (a failure leaves no partial file); the count."""
    target = Path(output)
    if target.is_dir():
        raise ConfigError(f"--output {str(output)!r} is a folder", fix="name a .jsonl file")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    count = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                count += 1
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return count


@config_command(PrepareConfig, name="prepare")
def prepare(config: PrepareConfig) -> None:
    """Read datasets and write their canonical rows (OpenAI-style messages, preference pairs,
    KTO labels or text) to one .jsonl file."""
    from martlet_data.loading import load_datasets

    specs = _need_specs(config)
    if not config.output.strip():
        raise ConfigError("--output is empty", fix="name a .jsonl file")
    with warnings_to_stderr():
        rows = load_datasets(specs, **config.read_options())
        try:
            count = write_jsonl(rows, config.output)
        except OSError as exc:
            raise MartletError(
                f"cannot write {config.output!r}",
                why=str(exc),
                fix="check the path and permissions",
            ) from exc
    skipped = rows.report.skipped
    note = f" (skipped {skipped} bad rows; see the warning above)" if skipped else ""
    click.echo(f"wrote {count} rows to {config.output}{note}")


dataset.add_command(list_datasets)
dataset.add_command(info)
dataset.add_command(prepare)
