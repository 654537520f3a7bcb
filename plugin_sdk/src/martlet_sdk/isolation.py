"""Plugin managers that hold only the plugins a test names."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

from martlet.errors import PluginError
from martlet.manager import PluginManager, PluginWarning, set_manager


def isolated_manager(*plugins: Any, builtins: bool = True) -> PluginManager:
    """A fresh manager holding only ``plugins`` (and the core's commands unless ``builtins``).

    Each plugin is either the name of an installed plugin (or its distribution), loaded
    through its entry point exactly as in real use, or a module/object with hook
    implementations, registered as a local plugin.

    Raises:
        PluginError: a named plugin is not installed or failed to load.
    """
    names = [p for p in plugins if isinstance(p, str)]
    objects = [p for p in plugins if not isinstance(p, str)]
    environ = {"MARTLET_PLUGINS": ",".join(names)}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PluginWarning)
        manager = PluginManager(environ=environ, discover=bool(names), builtins=builtins)
    for name in names:
        if manager.plugin(name) is None:
            raise PluginError(
                f"plugin {name!r} is not installed",
                fix="install its distribution (pip install -e .) before running its tests",
            )
    for warning in caught:  # the rest are the test's business
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    manager.check_requested()
    for obj in objects:
        manager.register(obj)
    return manager


@contextlib.contextmanager
def activated(manager: PluginManager) -> Iterator[PluginManager]:
    """Make ``manager`` the process-wide one (for the CLI and ``martlet.registry``) inside."""
    previous = set_manager(manager)
    try:
        yield manager
    finally:
        set_manager(previous)
