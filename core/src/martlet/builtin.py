"""The core's own plugin: the ``version``, ``plugins`` and ``doctor`` commands.

Registered by the plugin manager directly (not through an entry point), so these commands work
whatever ``MARTLET_PLUGINS`` says; otherwise it is a plugin like any other.
"""

from __future__ import annotations

from martlet.hookspecs import hookimpl
from martlet.manager import PLUGIN_API
from martlet.records import CommandRecord

MARTLET_API = PLUGIN_API


@hookimpl
def martlet_commands():
    yield CommandRecord(
        name="version",
        impl="martlet.core_commands:version",
        summary="Show the versions of martlet-core and the plugin API.",
    )
    yield CommandRecord(
        name="plugins",
        impl="martlet.core_commands:plugins",
        summary="List installed plugins, their status and what they register.",
    )
    yield CommandRecord(
        name="doctor",
        impl="martlet.core_commands:doctor",
        summary="Check the environment: Python, libraries, accelerators, plugins, memory, disk.",
    )
