"""The contract of ``datasets`` records: the record's rows load through the record, the way
users read them (``martlet.load_dataset(NAME)``), and are canonical rows of its ``format``.

- ``path`` in the ``"package:relative/path"`` form names a file (or folder) inside an
  installed package; it must be there once the package is installed, which for a wheel means
  listing it under ``[tool.setuptools.package-data]``.
- Rows are read by the ``dataset_sources`` of martlet-data (the ``data`` plugin): the check is
  skipped, with the reason, where martlet-data is not installed.
- A record that reads only from a hub (``hub_ids`` and no ``path``) is not read: tests download
  nothing.
- A record whose preprocessor's ``validate(**options)`` refuses the options of the
  ``dataset_options`` fixture (``{}`` by default) is skipped with its message; supply the
  options it needs (``{"model_name": ..., ...}``) by overriding that fixture.

A canonical row is ``{"messages": [{"role", "content", ...}, ...]}`` with an assistant turn
(plus ``rejected_response`` or ``rejected_messages`` for ``preference`` rows and a boolean
``label`` for ``kto`` rows), or ``{"text": str}`` for ``text`` rows.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from martlet.errors import ConfigError, MartletError, PluginError
from martlet.manager import PluginManager
from martlet.records import Record

from martlet_sdk.contracts.base import RecordContract
from martlet_sdk.isolation import activated, isolated_manager

ROLES = ("system", "user", "assistant", "tool")
#: the row each declared format becomes (the other formats become ``messages`` rows)
ROW_KINDS = {"preference": "preference", "kto": "kto", "text": "text"}
DATA_PLUGIN = "data"  # martlet-data: the dataset sources that read named datasets


def package_file(path: str) -> tuple[str, str] | None:
    """``(package, relative)`` when ``path`` is in the ``"package:relative/path"`` form (as
    martlet-data reads it), else None (a plain file system path)."""
    package, sep, relative = path.partition(":")
    if sep and package.replace(".", "").replace("_", "").isalnum() and not os.path.exists(path):
        return package, relative
    return None


def row_problem(row: Any, format: str = "") -> str | None:
    """What keeps ``row`` from being a canonical row (of ``format``, when given); None if it is
    one."""
    if not isinstance(row, Mapping):
        return f"a row must be a dict, got {type(row).__name__}"
    want = ROW_KINDS.get((format or "").lower().replace("-", "_"))
    if want == "text" or (want is None and "text" in row and "messages" not in row):
        text = row.get("text")
        if not isinstance(text, str) or not text.strip():
            return f"a text row needs a non-empty 'text' string, got keys {sorted(row)}"
        return None
    problem = _messages_problem(row.get("messages"), "messages")
    if problem:
        return problem
    if want == "preference":
        if isinstance(row.get("rejected_messages"), list):
            return _messages_problem(row["rejected_messages"], "rejected_messages")
        rejected = row.get("rejected_response")
        if not isinstance(rejected, str) or not rejected.strip():
            return "a preference row needs 'rejected_response' (a string) or 'rejected_messages'"
    if want == "kto" and not isinstance(row.get("label"), bool):
        return f"a kto row needs a boolean 'label', got {row.get('label')!r}"
    for media in ("images", "audios", "videos"):
        if media in row and not isinstance(row[media], list):
            return f"{media!r} must be a list, got {type(row[media]).__name__}"
    return None


def _messages_problem(messages: Any, field: str) -> str | None:
    if not isinstance(messages, list) or not messages:
        return f"{field!r} must be a non-empty list of messages, got {messages!r:.80}"
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            return f"{field}[{i}] must be a dict, got {type(message).__name__}"
        if message.get("role") not in ROLES:
            return f"{field}[{i}] has role {message.get('role')!r}; canonical: {', '.join(ROLES)}"
        if not isinstance(message.get("content"), (str, list)):
            return f"{field}[{i}] has no 'content' string"
    if not any(m["role"] == "assistant" for m in messages):
        return f"{field!r} has no assistant turn"
    return None


class DatasetContract(RecordContract):
    """A named dataset: registration checks; the packaged file is there; the rows load through
    the record and are canonical rows of its ``format``.

    Optional fixture: ``dataset_options`` — the options the rows are read with (``{}``), e.g.
    ``{"model_name": ["Aria"], "model_author": ["Acme"]}`` for a preprocessor that needs them.
    """

    kind = "datasets"

    @pytest.fixture
    def dataset_options(self) -> dict[str, Any]:
        return {}

    @pytest.fixture
    def reading_manager(
        self, contract_manager: PluginManager, plugin: Any
    ) -> Iterator[PluginManager]:
        """The plugin with the dataset sources that read named datasets (martlet-data's)."""
        if contract_manager.registry.records("dataset_sources"):
            yield contract_manager
            return
        try:
            manager = isolated_manager(plugin, DATA_PLUGIN)
        except PluginError as exc:
            pytest.skip(
                f"reading a named dataset needs martlet-data (pip install martlet-data): {exc}"
            )
        with activated(manager):
            yield manager

    def test_packaged_file_is_installed(self, record: Record) -> None:
        if not record.path:
            pytest.skip(f"dataset {record.name!r} has no path")
        parts = package_file(record.path)
        if parts is None:
            assert os.path.exists(os.path.expanduser(record.path)), (
                f"dataset {record.name!r}: {record.path!r} does not exist"
            )
            return
        package, relative = parts
        from importlib import resources

        try:
            target = resources.files(package).joinpath(relative)
        except ModuleNotFoundError as exc:
            raise AssertionError(
                f"dataset {record.name!r}: path {record.path!r} names package {package!r}, "
                f"which is not importable ({exc})"
            ) from None
        assert target.is_file() or target.is_dir(), (
            f"dataset {record.name!r}: {relative!r} is not in the installed package {package!r} "
            f"(looked at {target}); ship it in the wheel: under [tool.setuptools.package-data] "
            f'in pyproject.toml, "{package}" = ["{relative}"] (a glob works too)'
        )

    def test_rows_load_through_the_record_and_are_canonical(
        self, record: Record, reading_manager: PluginManager, dataset_options: dict[str, Any]
    ) -> None:
        import martlet

        if not record.path and record.hub_ids:
            hubs = ", ".join(f"{hub}::{id_}" for hub, id_ in record.hub_ids.items())
            pytest.skip(
                f"dataset {record.name!r} is read from a hub ({hubs}); tests download nothing"
            )
        self._skip_unless_options_fit(record, dataset_options)
        try:
            rows = martlet.load_dataset(record.name, on_bad_rows="error", **dataset_options)
            rows = list(rows)
        except MartletError as exc:
            raise AssertionError(
                f"dataset {record.name!r} does not load through its record: {exc}"
            ) from exc
        assert rows, f"dataset {record.name!r} gave no rows"
        for number, row in enumerate(rows, 1):
            problem = row_problem(row, record.format)
            assert problem is None, (
                f"dataset {record.name!r}, row {number} is not a canonical "
                f"{record.format or 'auto'} row: {problem}"
            )

    @staticmethod
    def _skip_unless_options_fit(record: Record, options: dict[str, Any]) -> None:
        if not record.impl:
            return
        missing = record.missing_requirements()
        if missing:
            pytest.skip(f"dataset {record.name!r} needs {', '.join(missing)}")
        validate = getattr(record.load(), "validate", None)
        if not callable(validate):
            return
        names = {k: options.get(k, ()) for k in ("model_name", "model_author")}
        try:
            validate(**names)  # what the reader passes it
        except ConfigError as exc:
            pytest.skip(
                f"dataset {record.name!r} needs options to load ({exc.what}); give them with a "
                "`dataset_options` fixture"
            )
