"""Where a model resolves from: what ``martlet model info`` shows and ``load_model`` uses.

:func:`resolve_registered` is the resolver (``impl``) of every catalogued model record: it
returns the folder ``martlet download`` put the model in, or None, after which the core tries
the record's hub id (which the ``hf`` loader finds in the local Hugging Face cache).
:func:`locate` answers for any model string, following the same order as
:func:`martlet.api.resolve_model`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from martlet.paths import cache_dir

from martlet_hf.hub import HUBS, downloaded, downloaded_model, find_local, looks_like_hub_id

#: what each origin means, in words
ORIGINS = {
    "cache": "the Martlet cache (converted from GGUF)",
    "package": "a file inside an installed Python package",
    "download": "a folder written by `martlet download`",
    "hf-cache": "the local Hugging Face cache",
    "path": "a local path",
    "hub": "the hub only: not on this machine yet",
}


def resolve_registered(record: Any) -> str | None:
    """A catalogued model's local folder from ``martlet download``, or None."""
    found = downloaded_model(record.name)
    if found:
        return found
    for hub in HUBS:
        repo_id = record.hub_ids.get(hub)
        if repo_id:
            found = downloaded(hub, repo_id)
            if found:
                return found
    return None


@dataclass(frozen=True)
class Location:
    """Where a model is.

    Attributes:
        origin: ``cache``, ``package``, ``download``, ``hf-cache``, ``path`` or ``hub``
            (see :data:`ORIGINS`).
        source: what the loader is given (a path, or a hub id when ``origin`` is ``hub``).
        path: the local file or folder (None for ``hub``).
        record: the model record, when the model is a registered id.
    """

    origin: str
    source: str
    path: str | None
    record: Any = field(default=None, compare=False)

    @property
    def description(self) -> str:
        return ORIGINS[self.origin]

    def to_dict(self) -> dict[str, Any]:
        return {
            "origin": self.origin,
            "description": self.description,
            "source": self.source,
            "path": self.path,
        }


def locate(model: str) -> Location:
    """Where ``model`` (a registered id, a path or a hub id) would be loaded from.

    Raises:
        UnknownNameError: ``model`` is no registered id, no existing path and not shaped like a
            hub id (the message suggests close model ids).
    """
    from martlet.api import resolve_model

    from martlet_hf.hub import unknown_model

    source, record = resolve_model(model)
    if record is None and not Path(source).expanduser().exists():
        if not looks_like_hub_id(source) or "/" not in source:
            raise unknown_model(model)
    return Location(*_classify(source), record=record)


def _classify(source: str) -> tuple[str, str, str | None]:
    path = Path(source).expanduser()
    if path.exists():
        resolved = path.resolve()
        if _inside(resolved, cache_dir()):
            return "cache", source, str(resolved)
        if "site-packages" in resolved.parts or "dist-packages" in resolved.parts:
            return "package", source, str(resolved)
        if _is_download(resolved):
            return "download", source, str(resolved)
        return "path", source, str(resolved)
    found = find_local(source) if looks_like_hub_id(source) else None
    if found:
        return found[0], source, found[1]
    return "hub", source, None


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder.expanduser().resolve())
    except ValueError:
        return False
    return True


def _is_download(path: Path) -> bool:
    from martlet_hf.hub import _read_index

    return any(Path(e.get("path", "")).resolve() == path for e in _read_index().values())
