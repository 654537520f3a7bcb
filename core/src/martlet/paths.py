"""Where Martlet keeps files of its own."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$MARTLET_CACHE``, else ``$XDG_CACHE_HOME/martlet``, else ``~/.cache/martlet``.

    The folder is not created here; writers create what they need.
    """
    if os.environ.get("MARTLET_CACHE"):
        return Path(os.environ["MARTLET_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "martlet"


def nearest_existing(path: Path) -> Path:
    """``path`` if it exists, else its nearest parent that does: where a new file or folder
    at ``path`` would be created (it must be a folder one can write in)."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    return existing


def write_error(folder: Path) -> OSError | None:
    """The error creating a file in ``folder`` raises, or None; nothing is left behind."""
    import tempfile

    try:
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as exc:
        return exc
    return None
