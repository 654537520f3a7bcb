"""``martlet model list|info`` and ``martlet download``."""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import click
from martlet.cli import config_command
from martlet.config import option
from martlet.errors import UnknownNameError
from martlet.manager import get_manager
from martlet.records import ModelRecord, normalize

from martlet_hf.catalog import FAMILIES

# ---------------------------------------------------------------------- model list


@dataclass
class ModelListConfig:
    json: bool = option(False, help="Print a JSON array: one object per model.")
    family: str | None = option(None, help="Only models of this family (e.g. qwen2.5, llama3.1).")


def _models() -> list[ModelRecord]:
    return [r for r in get_manager().registry.records("models") if isinstance(r, ModelRecord)]


def _model_row(record: ModelRecord) -> dict[str, Any]:
    return {
        "name": record.name,
        "family": record.family,
        "size": record.size,
        "modality": record.modality,
        "template": record.template,
        "hub_ids": dict(record.hub_ids),
        "aliases": list(record.aliases),
        "summary": record.summary,
        "plugin": record.origin,
    }


@config_command(ModelListConfig, name="list")
def model_list(config: ModelListConfig) -> None:
    """List the registered model ids: family, size, modality, template and hub id."""
    records = _models()
    if config.family:
        families = sorted({r.family for r in records})
        wanted = normalize(config.family)
        records = [r for r in records if normalize(r.family) == wanted]
        if not records:
            close = difflib.get_close_matches(wanted, families, n=3, cutoff=0.5)
            raise UnknownNameError(
                f"no registered model of family {config.family!r}",
                why=f"did you mean {', '.join(close)}?" if close else None,
                fix=f"families: {', '.join(families)}",
            )
    rows = [_model_row(r) for r in records]
    if config.json:
        click.echo(json.dumps(rows, indent=2))
        return
    header = ("NAME", "FAMILY", "SIZE", "MODALITY", "TEMPLATE", "HUGGING FACE")
    table = [header] + [
        (
            r["name"],
            r["family"],
            r["size"],
            r["modality"],
            r["template"],
            r["hub_ids"].get("huggingface", ""),
        )
        for r in rows
    ]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    for row in table:
        click.echo("  ".join(f"{str(v):<{w}}" for v, w in zip(row, widths, strict=True)).rstrip())


# ---------------------------------------------------------------------- model info


@dataclass
class ModelInfoConfig:
    model: str = option(
        help="A registered model id, a local folder or .gguf file, or a hub id.",
        positional=True,
        metavar="ID_OR_PATH",
    )
    json: bool = option(False, help="Print the information as JSON.")


def _by_hub_id(model: str) -> ModelRecord | None:
    for record in _models():
        if model in record.hub_ids.values():
            return record
    return None


def _loader_for(source: str, record: ModelRecord | None) -> str | None:
    if record is not None and record.loader:
        return record.loader
    claims = []
    for loader in get_manager().registry.records("model_loaders"):
        if loader.missing_requirements():
            continue
        try:
            if loader.load()().can_load(source):
                claims.append(loader.name)
        except Exception:  # noqa: BLE001 - info shows what it can; loading reports the error
            continue
    return claims[0] if len(claims) == 1 else None


def model_info_data(model: str) -> dict[str, Any]:
    """What ``martlet model info MODEL`` shows, as a mapping."""
    from martlet_hf.families import match_family
    from martlet_hf.locate import locate

    record = _by_hub_id(model) if "/" in model and not Path(model).exists() else None
    location = locate(record.name if record is not None else model)
    record = location.record or record
    data: dict[str, Any] = {"model": model}
    if record is not None:
        data.update(_model_row(record))
        family = FAMILIES.get(record.family)
        data["family_summary"] = family.summary if family else ""
    data["resolves_from"] = location.to_dict()
    data["loader"] = _loader_for(location.source, record)
    if location.path and (record is None or location.origin in ("path", "download", "hf-cache")):
        match = match_family(location.path)
        data["detected"] = match.to_dict() if match else None
        if record is None and match is not None:
            data["family"] = match.family
            data["template"] = match.template
    return data


@config_command(ModelInfoConfig, name="info")
def model_info(config: ModelInfoConfig) -> None:
    """Show a model: family, hub ids, template, and where it resolves from (cache, package,
    download, Hugging Face cache, path or hub)."""
    data = model_info_data(config.model)
    if config.json:
        click.echo(json.dumps(data, indent=2))
        return
    where = data["resolves_from"]
    lines: list[tuple[str, str]] = []
    if "name" in data:
        aliases = f"  (aliases: {', '.join(data['aliases'])})" if data["aliases"] else ""
        lines.append(("model", data["name"] + aliases))
        summary = f" - {data['family_summary']}" if data.get("family_summary") else ""
        lines.append(("family", data["family"] + summary))
        lines += [("size", data["size"] or "?"), ("modality", data["modality"])]
        lines.append(("template", f"{data['template'] or 'auto'} (when the tokenizer ships none)"))
        for hub, repo in data["hub_ids"].items():
            lines.append((f"{hub}", repo))
    else:
        lines.append(("model", data["model"]))
    lines.append(("resolves from", f"{where['origin']}: {where['path'] or where['source']}"))
    lines.append(("", where["description"]))
    if where["origin"] == "hub":
        # a registered model with only a ModelScope id downloads from there
        ms_only = "hub_ids" in data and "huggingface" not in data["hub_ids"]
        fetch = f"martlet download {data.get('name', data['model'])}"
        lines.append(("", f"fetch it with: {fetch}{' --hub modelscope' if ms_only else ''}"))
    detected = data.get("detected")
    if detected:
        lines.append(("detected", f"{detected['family']} ({detected['reason']})"))
        if detected["model"]:
            lines.append(("", f"registered as {detected['model']}"))
        if "name" not in data:
            lines.append(("template", f"{detected['template']} (when the tokenizer ships none)"))
    elif "detected" in data:
        lines.append(("detected", "no known family"))
    lines.append(("loader", data["loader"] or "?"))
    if data.get("plugin"):
        lines.append(("plugin", data["plugin"]))
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        click.echo(f"{key:<{width}}  {value}".rstrip())


@click.group(name="model")
def model() -> None:
    """Registered model ids: `list` them, or show `info` on one (or on a folder or file)."""


model.add_command(model_list)
model.add_command(model_info)


# ---------------------------------------------------------------------- download


@dataclass
class DownloadConfig:
    model: str = option(
        help="A registered model id, or a repository id on the hub (org/name).",
        positional=True,
        metavar="MODEL",
    )
    hub: Literal["huggingface", "modelscope"] = option(
        "huggingface", help="Which hub to download from."
    )
    output_dir: str | None = option(
        None,
        help="Put the files in this folder (default: the hub's own cache).",
        aliases=("local_dir",),
    )
    revision: str | None = option(
        None, help="A branch, tag or commit.", aliases=("model_revision",)
    )
    timeout: float = option(10.0, help="Seconds to wait for the hub to answer.")


@config_command(DownloadConfig, name="download")
def download(config: DownloadConfig) -> None:
    """Download a model from the Hugging Face Hub or ModelScope (resumes when run again).

    Afterwards the model id (or hub id) loads without the network.
    """
    from martlet_hf.hub import HUB_LABELS
    from martlet_hf.hub import download as fetch

    done = fetch(
        config.model,
        hub=config.hub,
        output_dir=config.output_dir,
        revision=config.revision,
        timeout=config.timeout,
    )
    click.echo(f"downloaded {done.repo_id} from {HUB_LABELS[done.hub]} to {done.path}")
