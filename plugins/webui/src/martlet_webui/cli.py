"""``martlet web-ui``: the local web UI."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

import click
from martlet.cli import config_command
from martlet.config import option, require


@dataclass(kw_only=True)
class WebUiConfig:
    host: str = option(
        "127.0.0.1",
        help="The address to listen on. The UI runs commands on this machine for whoever "
        "reaches it, so keep the default (this machine only) unless that is what you want; "
        "it makes no share link.",
        aliases=("server_name",),
    )
    port: int = option(
        7860, help="The port to listen on (0: a free one).", aliases=("server_port",)
    )
    output: str = option(
        "output",
        help="The folder (relative to where it runs) new runs, evaluations and exports go "
        "under by default, and where the run directories it offers are found.",
    )

    def __post_init__(self) -> None:
        require(0 <= self.port <= 65535, "port", self.port, "between 0 and 65535", "7860")


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@config_command(WebUiConfig, name="web-ui")
def web_ui(config: WebUiConfig) -> None:
    """Open Martlet's web UI: train, chat, evaluate and export from a browser.

    Every action is shown as the `martlet` command line it runs. The UI listens on this
    machine only (127.0.0.1) and makes no outside calls of its own.

    Example: martlet web-ui --port 7860, then open http://127.0.0.1:7860
    """
    from martlet_webui.app import launch, offline_environment

    env = offline_environment()  # before gradio is imported
    port = config.port or _free_port(config.host)
    if not _is_loopback(config.host):
        click.echo(
            f"warning: listening on {config.host}: anyone who reaches this address can run "
            "commands on this machine through the UI",
            err=True,
        )
    click.echo(f"Martlet web UI: http://{config.host}:{port}", err=True)
    launch(config.host, port, env=env, output=config.output)
