"""The core commands: ``martlet version``, ``martlet plugins`` and ``martlet doctor``."""

from __future__ import annotations

import json
import platform
import shutil
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import click

from martlet import __version__
from martlet.cli import config_command
from martlet.config import option
from martlet.manager import PLUGIN_API, get_manager
from martlet.paths import cache_dir
from martlet.records import check_kind

LIBRARIES = (
    "torch",
    "transformers",
    "tokenizers",
    "accelerate",
    "peft",
    "datasets",
    "safetensors",
    "huggingface_hub",
    "trl",
    "deepspeed",
    "bitsandbytes",
    "vllm",
)


@dataclass
class VersionConfig:
    json: bool = option(False, help="Print JSON.")


@config_command(VersionConfig)
def version(config: VersionConfig) -> None:
    """Show the versions of martlet-core and the plugin API."""
    if config.json:
        click.echo(json.dumps({"martlet-core": __version__, "plugin_api": PLUGIN_API}))
    else:
        click.echo(f"martlet-core {__version__} (plugin API {PLUGIN_API})")


@dataclass
class PluginsConfig:
    json: bool = option(False, help="Print a JSON array: one object per plugin.")
    kind: str | None = option(
        None, help="Only plugins that register this kind, and only those records (e.g. tuners)."
    )


@config_command(PluginsConfig)
def plugins(config: PluginsConfig) -> None:
    """List installed plugins: name, distribution, version, status and what each registers.

    Status is `ok`, `failed` (with the error) or `blocked` (by MARTLET_PLUGINS or
    MARTLET_DISABLE_PLUGINS).
    """
    manager = get_manager()
    rows = [info.to_dict() for info in manager.plugins]
    if config.kind:
        kind = check_kind(config.kind).kind
        rows = [
            {**row, "records": {kind: row["records"][kind]}}
            for row in rows
            if kind in row["records"]
        ]
    if config.json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no plugins" + (f" register {config.kind}" if config.kind else ""))
        return
    header = ("NAME", "DISTRIBUTION", "VERSION", "STATUS")
    table = [header] + [(r["name"], r["distribution"], r["version"], r["status"]) for r in rows]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    click.echo(fmt.format(*header).rstrip())
    for row in rows:
        status = row["status"]
        colour = {"ok": "green", "failed": "red", "blocked": "yellow"}.get(status)
        line = fmt.format(row["name"], row["distribution"], row["version"], status).rstrip()
        click.echo(line.replace(status, click.style(status, fg=colour), 1) if colour else line)
        for kind, names in row["records"].items():
            click.echo(f"    {kind}: {', '.join(names)}")
        if row["error"]:
            click.echo(f"    error: {row['error']}")


@dataclass
class DoctorConfig:
    json: bool = option(False, help="Print the report as JSON.")


def _version_of(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _accelerators() -> list[dict[str, Any]]:
    out = []
    for record in get_manager().registry.records("accelerators"):
        entry: dict[str, Any] = {"name": record.name, "plugin": record.origin}
        missing = record.missing_requirements()
        if missing:
            entry.update(available=False, note=f"needs {', '.join(missing)}")
            out.append(entry)
            continue
        try:
            acc = record.load()()
            available = bool(acc.is_available())
            entry["available"] = available
            if available:
                entry["devices"] = acc.device_count()
                entry["dtypes"] = acc.supported_dtypes()
                entry["preferred_dtype"] = acc.preferred_dtype()
                entry["memory"] = acc.memory_stats(0)
                entry["distributed_backend"] = acc.distributed_backend()
        except Exception as exc:  # noqa: BLE001 - doctor reports, never crashes
            entry.update(available=False, note=f"error: {type(exc).__name__}: {exc}")
        out.append(entry)
    return out


def _parallel_strategies() -> list[dict[str, Any]]:
    """The installed parallel strategies (``--parallel``) and what they say they support."""
    return [
        {
            "name": record.name,
            "plugin": record.origin,
            "multi_process": record.multi_process,
            "capabilities": sorted(record.capabilities),
            "summary": record.summary,
        }
        for record in get_manager().registry.records("parallel_strategies")
    ]


def _memory() -> dict[str, int]:
    info: dict[str, int] = {}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("MemTotal", "MemAvailable"):
                info["total" if name == "MemTotal" else "available"] = int(value.split()[0]) * 1024
    except OSError:
        import os

        try:
            info["total"] = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            pass
    return info


def _disk() -> dict[str, Any]:
    path = cache_dir()
    probe = path
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    usage = shutil.disk_usage(probe)
    return {"cache_dir": str(path), "total": usage.total, "free": usage.free}


def _gib(n: int | None) -> str:
    return "?" if n is None else f"{n / 2**30:.1f} GiB"


def doctor_report() -> dict[str, Any]:
    """Everything ``martlet doctor`` shows, as data."""
    manager = get_manager()
    plugins = [info.to_dict() for info in manager.plugins]
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "martlet-core": __version__,
        "plugin_api": PLUGIN_API,
        "libraries": {lib: _version_of(lib) for lib in LIBRARIES},
        "accelerators": _accelerators(),
        "parallel_strategies": _parallel_strategies(),
        "plugins": {
            status: [p["name"] for p in plugins if p["status"] == status]
            for status in ("ok", "failed", "blocked")
        },
        "plugin_errors": {p["name"]: p["error"] for p in plugins if p["status"] == "failed"},
        "memory": _memory(),
        "disk": _disk(),
    }


@config_command(DoctorConfig)
def doctor(config: DoctorConfig) -> None:
    """Check the environment: Python, libraries, accelerators, plugins, memory and disk."""
    report = doctor_report()
    if config.json:
        click.echo(json.dumps(report, indent=2))
        return
    echo = click.echo
    echo(f"Python        {report['python']} ({report['platform']})")
    echo(f"martlet-core  {report['martlet-core']} (plugin API {report['plugin_api']})")
    echo("Libraries")
    for lib, ver in report["libraries"].items():
        echo(f"  {lib:<16} {ver or '-'}")
    echo("Accelerators")
    if not report["accelerators"]:
        echo("  none registered (pip install martlet-accel)")
    for acc in report["accelerators"]:
        if acc.get("available"):
            mem = acc.get("memory") or {}
            echo(
                f"  {acc['name']:<6} yes  devices={acc['devices']} dtypes={','.join(acc['dtypes'])}"
                f" preferred={acc['preferred_dtype']} memory={_gib(mem.get('total'))}"
                f" free={_gib(mem.get('free'))} backend={acc.get('distributed_backend') or '-'}"
            )
        else:
            echo(f"  {acc['name']:<6} no   {acc.get('note', '')}".rstrip())
    echo("Parallel")
    if not report["parallel_strategies"]:
        echo("  one process only (pip install martlet-dist for --nproc-per-node)")
    for strategy in report["parallel_strategies"]:
        echo(f"  {strategy['name']:<10} {', '.join(strategy['capabilities'])}")
    plugins = report["plugins"]
    echo(
        f"Plugins       {len(plugins['ok'])} ok, {len(plugins['failed'])} failed, "
        f"{len(plugins['blocked'])} blocked"
    )
    for name, error in report["plugin_errors"].items():
        echo(click.style(f"  {name}: {error}", fg="red"))
    mem, disk = report["memory"], report["disk"]
    echo(f"Memory        {_gib(mem.get('available'))} available of {_gib(mem.get('total'))}")
    echo(f"Disk          {_gib(disk['free'])} free of {_gib(disk['total'])} ({disk['cache_dir']})")
