"""The contract of ``commands`` records: a real click command the CLI lists and runs."""

from __future__ import annotations

from typing import Any

from martlet.records import Record

from martlet_sdk.contracts.base import RecordContract
from martlet_sdk.runner import run_cli


class CommandContract(RecordContract):
    """Checks a CLI command end to end through ``martlet`` itself."""

    kind = "commands"

    def test_impl_is_a_click_command(self, impl: Any) -> None:
        import click

        assert isinstance(impl, click.Command), f"{type(impl).__name__} is not a click.Command"

    def test_listed_in_help_with_its_summary(self, contract_manager, record: Record) -> None:
        result = run_cli(["--help"])
        assert result.exit_code == 0, result.stderr
        line = next(
            (ln for ln in result.stdout.splitlines() if ln.strip().startswith(record.name)), ""
        )
        assert line, f"`martlet --help` does not list {record.name!r}:\n{result.stdout}"
        assert record.summary.split()[0] in result.stdout

    def test_help_runs(self, contract_manager, record: Record) -> None:
        result = run_cli([record.name, "--help"])
        assert result.exit_code == 0, result.stderr or result.stdout
        assert "Usage:" in result.stdout

    def test_alias_invokes_the_same_command(self, contract_manager, record: Record) -> None:
        for alias in record.aliases:
            result = run_cli([alias, "--help"])
            assert result.exit_code == 0, result.stderr
