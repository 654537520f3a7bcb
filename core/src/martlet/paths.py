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
