"""``martlet plugin``: tools for plugin authors."""

from __future__ import annotations

from dataclasses import dataclass

import click
from martlet.cli import config_command
from martlet.config import option
from martlet.records import KINDS


@click.group()
def plugin() -> None:
    """Tools for plugin authors: `martlet plugin new NAME --kind KIND`."""


@dataclass
class NewPluginConfig:
    name: str = option(
        help="The plugin's name (lowercase, hyphens); the package is martlet-NAME.",
        positional=True,
    )
    kind: str = option("commands", help=f"The capability kind it registers: {', '.join(KINDS)}.")
    output: str = option(".", help="The folder to create the package in.")
    force: bool = option(False, help="Overwrite an existing, non-empty package folder.")


@config_command(NewPluginConfig, name="new")
def new(config: NewPluginConfig) -> None:
    """Write a ready plugin package: pyproject with the entry point, a plugin module, an
    implementation, a contract test and a README."""
    from martlet_sdk.scaffold import new_plugin

    root = new_plugin(config.name, config.kind, config.output, force=config.force)
    click.echo(f"wrote {root}")
    click.echo(f"next: pip install -e '{root}[test]' && pytest {root}")


plugin.add_command(new)
