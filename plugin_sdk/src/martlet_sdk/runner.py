"""Run the ``martlet`` CLI in-process and capture what it prints."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass
class CliResult:
    """What one CLI run returned and printed."""

    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_cli(
    args: Sequence[str], *, input: str | None = None, env: Mapping[str, str] | None = None
) -> CliResult:
    """Run ``martlet ARGS`` through :func:`martlet.cli.main` with the process-wide manager.

    Errors are handled as the real CLI handles them (a message and an exit code), so tests
    see what users see.
    """
    from click.testing import CliRunner
    from martlet.cli import main

    runner = CliRunner()
    with runner.isolation(input=input, env=dict(env or {})) as (out, err, _mixed):
        code = main(list(args))
        return CliResult(code, out.getvalue().decode(), err.getvalue().decode())
