"""Martlet: a plugin-based toolkit that takes a language model from download to production.

This package is the core: hook specs, records, the plugin manager, the registry, typed configs
and the CLI shell. It imports no heavy library (torch, transformers, ...) at import time;
every capability comes from a plugin.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

from martlet.errors import MartletError  # noqa: E402
from martlet.hookspecs import hookimpl  # noqa: E402
from martlet.manager import PLUGIN_API, get_manager  # noqa: E402


def register_plugin(obj: Any, name: str | None = None):
    """Register hook implementations from a module, class or object for this process.

    The plugin shows as ``local`` in ``martlet plugins`` and its records are usable by every
    command run from this process. Raises :class:`~martlet.errors.PluginError` when its hooks
    or records are invalid or conflict with another plugin's.
    """
    return get_manager().register(obj, name=name)


def __getattr__(name: str) -> Any:
    # the Python API (martlet.load_model, ...) lives in martlet.api, imported on first use
    if name in _API:
        from martlet import api

        return getattr(api, name)
    if name in ("read_run", "load_run"):
        from martlet import runs

        return getattr(runs, name)
    raise AttributeError(f"module 'martlet' has no attribute {name!r}")


_API = (
    "load_model",
    "load_tokenizer",
    "load_template",
    "load_engine",
    "load_dataset",
    "register_model",
    "register_dataset",
    "resolve_model",
)

__all__ = [
    *_API,
    "load_run",
    "read_run",
    "PLUGIN_API",
    "MartletError",
    "__version__",
    "get_manager",
    "hookimpl",
    "register_plugin",
]
