"""The SDK's Martlet plugin: the ``martlet plugin`` command group."""

from martlet import hookimpl
from martlet.records import CommandRecord

MARTLET_API = 1


@hookimpl
def martlet_commands():
    yield CommandRecord(
        name="plugin",
        impl="martlet_sdk.cli:plugin",
        summary="Write plugins: `martlet plugin new NAME --kind KIND` makes a ready package.",
    )
