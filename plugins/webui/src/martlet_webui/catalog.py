"""What is installed, as the UI offers it: commands, names of each kind, the option groups of
records, run directories and eval tasks — all read from the registry (or a command's own
listing), never from lists of our own, so a plugin installed later shows up by itself."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from martlet.errors import MartletError

from martlet_webui.forms import Field, record_fields


def registry() -> Any:
    from martlet.manager import get_manager

    return get_manager().registry


def names(kind: str, where: Any = None) -> list[str]:
    """The names registered in ``kind`` (those selector spec ``where`` admits, when given)."""
    return [r.name for r in registry().records(kind) if where is None or where.qualifies(r)]


def config_class(command: str) -> type | None:
    """The config dataclass of installed command ``command`` (None when no such command is
    installed, or it is not built from one: ``martlet.cli.config_command``)."""
    record = registry().find("commands", command)
    if record is None:
        return None
    try:
        impl = record.load()
    except MartletError:
        return None
    return getattr(impl, "config_cls", None)


def has_command(command: str) -> bool:
    return registry().find("commands", command) is not None


def selector(cls: type, kind: str) -> Any:
    """The option of config class ``cls`` that names one record of ``kind`` (a
    :class:`martlet.compose.Selector`), or None."""
    from martlet.compose import selectors

    return next((s for s in selectors(cls) if s.kind == kind and not s.many), None)


def selectors_of(cls: type, kind: str) -> Any:
    """The option of ``cls`` that names records of ``kind``, one or several (None: none)."""
    from martlet.compose import selectors

    return next((s for s in selectors(cls) if s.kind == kind), None)


def training_commands() -> list[str]:
    """The installed commands that train with a tuner (``sft``, ``pt``, ``rlhf``, and a
    plugin's): those whose config names a tuner record."""
    out = []
    for name in names("commands"):
        cls = config_class(name)
        if cls is not None and selector(cls, "tuners") is not None:
            out.append(name)
    return out


@dataclasses.dataclass(frozen=True)
class OptionGroup:
    """The options one options class declares, and the records of ``kind`` that declare it
    (records may share a class: every multiple-choice eval task takes ``--subjects``)."""

    kind: str
    records: tuple[str, ...]
    title: str
    fields: tuple[Field, ...]

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.records[0]}"

    def selected(self, chosen: Iterable[str]) -> bool:
        from martlet.records import normalize

        picked = {normalize(c) for c in chosen if c}
        return any(normalize(r) in picked for r in self.records)


def option_groups(kind: str, exclude: Iterable[str] = (), where: Any = None) -> list[OptionGroup]:
    """One :class:`OptionGroup` per options class that the records of ``kind`` declare (those
    ``where`` admits), less the options in ``exclude`` (the command's own); records without
    options, or whose options module fails to import, have none."""
    skip = tuple(exclude)
    groups: dict[type, list[Any]] = {}
    for record in registry().records(kind):
        if where is not None and not where.qualifies(record):
            continue
        try:
            cls = record.options_class()
        except MartletError:
            continue
        if cls is not None:
            groups.setdefault(cls, []).append(record)
    out = []
    for cls, records in groups.items():
        fields = tuple(f for r in records[:1] for f in record_fields(r, exclude=skip))
        if fields:
            label = records[0].label
            title = f"{label} {', '.join(r.name for r in records)}"
            if about := _first_sentence(cls):
                title += f": {about}"
            out.append(OptionGroup(kind, tuple(r.name for r in records), title, fields))
    return out


def _first_sentence(cls: type) -> str:
    """The first sentence of an options class's docstring ('' for dataclasses' generated
    signature)."""
    doc = (cls.__doc__ or "").strip()
    if not doc or doc.startswith(cls.__name__ + "("):
        return ""
    return " ".join(doc.split("\n\n")[0].split()).split(". ")[0].rstrip(".:").replace("``", "`")


def chosen_fields(groups: Sequence[OptionGroup], chosen: Iterable[str]) -> list[Field]:
    """The fields of the groups whose records are ``chosen``, each option once."""
    picked = list(chosen)
    out: dict[str, Field] = {}
    for group in groups:
        if group.selected(picked):
            for field in group.fields:
                out.setdefault(field.name, field)
    return list(out.values())


def runs(root: str | Path) -> list[str]:
    """The run directories under ``root`` (folders holding a ``config.yaml``, up to two
    levels down), newest first."""
    base = Path(root)
    if not base.is_dir():
        return []
    found = [p.parent for p in (*base.glob("*/config.yaml"), *base.glob("*/*/config.yaml"))]
    found = [p for p in found if p.is_dir() and not p.name.startswith("checkpoint-")]
    found.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    return [str(p) for p in found]


def fresh_dir(root: str | Path, stem: str) -> str:
    """``ROOT/STEM-N`` for the first N that names nothing yet: a new run's default folder."""
    base = Path(root)
    n = 1
    while (base / f"{stem}-{n}").exists():
        n += 1
    return str(base / f"{stem}-{n}")


def eval_tasks(program: Sequence[str], cwd: str | Path | None = None) -> list[dict[str, Any]]:
    """The tasks ``martlet eval --list-tasks --json`` lists (objects with ``name``, ``kind``,
    ``metric``, ``offline``, ``summary``); the registry's eval task records when that listing
    fails; ``[]`` when ``eval`` is not installed. ``program`` is how to run ``martlet`` (with
    its ``--plugin`` files), in ``cwd``."""
    if not has_command("eval"):
        return []
    try:
        done = subprocess.run(
            [*program, "eval", "--list-tasks", "--json"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        listed = json.loads(done.stdout) if done.returncode == 0 else None
    except (OSError, ValueError, subprocess.TimeoutExpired):
        listed = None
    if isinstance(listed, list) and all(isinstance(t, dict) and "name" in t for t in listed):
        return listed
    return [
        {"name": r.name, "metric": r.metric, "summary": r.summary}
        for r in registry().records("eval_tasks")
    ]
