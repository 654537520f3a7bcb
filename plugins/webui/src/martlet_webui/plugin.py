"""Registers `martlet web-ui` (imports only martlet: gradio and torch load when it runs)."""

from martlet import hookimpl
from martlet.records import CommandRecord

MARTLET_API = 1


@hookimpl
def martlet_commands():
    yield CommandRecord(
        name="web-ui",
        impl="martlet_webui.cli:web_ui",
        aliases=("webui",),
        summary="A local web UI (Gradio) to train, chat, evaluate and export.",
    )
