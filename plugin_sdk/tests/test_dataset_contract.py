"""DatasetContract reads the rows through the record (``martlet.load_dataset``), from the file
its ``package:relative/path`` names, and catches records whose rows cannot be read."""

from __future__ import annotations

import json
import sys

import pytest
from martlet import hookimpl
from martlet.records import DatasetRecord
from martlet_sdk.contracts import DatasetContract
from martlet_sdk.contracts.dataset import row_problem

PACKAGE = "_martlet_sdk_dataset_contract_rows"

ROWS = [
    {"q": "What is the capital of France?", "a": "Paris."},
    {"q": "Two plus two?", "a": "Four."},
]


@pytest.fixture(scope="module", autouse=True)
def package(tmp_path_factory):
    """An importable package holding ``data/rows.jsonl`` (and no ``data/missing.jsonl``)."""
    root = tmp_path_factory.mktemp("site")
    data = root / PACKAGE / "data"
    data.mkdir(parents=True)
    (root / PACKAGE / "__init__.py").write_text("")
    lines = [json.dumps({"query": r["q"], "response": r["a"]}) for r in ROWS]
    (data / "rows.jsonl").write_text("\n".join(lines) + "\n")
    sys.path.insert(0, str(root))
    yield root
    sys.path.remove(str(root))
    sys.modules.pop(PACKAGE, None)


class Datasets:
    @hookimpl
    def martlet_datasets(self):
        common = dict(summary="Rows for the contract's own tests.")
        yield DatasetRecord(name="packaged", path=f"{PACKAGE}:data/rows.jsonl", **common)
        yield DatasetRecord(
            name="packaged-qr", path=f"{PACKAGE}:data/rows.jsonl", format="query_response",
            **common,
        )  # fmt: skip
        yield DatasetRecord(name="not-shipped", path=f"{PACKAGE}:data/missing.jsonl", **common)
        yield DatasetRecord(
            name="said-preference", path=f"{PACKAGE}:data/rows.jsonl", format="preference",
            **common,
        )  # fmt: skip
        yield DatasetRecord(name="hub-only", hub_ids={"huggingface": "acme/rows"}, **common)


def _fails(test):
    return pytest.mark.xfail(raises=AssertionError, strict=True)(test)


class TestPackagedRows(DatasetContract):
    @pytest.fixture
    def plugin(self):
        return Datasets()

    @pytest.fixture(params=["packaged", "packaged-qr"])
    def record_name(self, request):
        return request.param


class TestFileNotShipped(DatasetContract):
    """The record's file is not in the package: what a wheel without package-data gives."""

    @pytest.fixture
    def plugin(self):
        return Datasets()

    @pytest.fixture
    def record_name(self):
        return "not-shipped"

    @_fails
    def test_packaged_file_is_installed(self, record):
        super().test_packaged_file_is_installed(record)

    @_fails
    def test_rows_load_through_the_record_and_are_canonical(
        self, record, reading_manager, dataset_options
    ):
        super().test_rows_load_through_the_record_and_are_canonical(
            record, reading_manager, dataset_options
        )


class TestRowsNotOfTheirFormat(DatasetContract):
    """Query-response rows declared as preference pairs cannot be read."""

    @pytest.fixture
    def plugin(self):
        return Datasets()

    @pytest.fixture
    def record_name(self):
        return "said-preference"

    @_fails
    def test_rows_load_through_the_record_and_are_canonical(
        self, record, reading_manager, dataset_options
    ):
        super().test_rows_load_through_the_record_and_are_canonical(
            record, reading_manager, dataset_options
        )


def test_a_hub_dataset_is_skipped_with_the_reason(load_check):
    outcome = load_check("hub-only")
    assert outcome == "skipped: dataset 'hub-only' is read from a hub (huggingface::acme/rows)"


@pytest.fixture
def load_check(martlet_manager):
    """Run the load check on one record in-process and say how it ended."""

    def run(name):
        manager = martlet_manager(Datasets(), "data")
        record = manager.registry.get("datasets", name)
        try:
            DatasetContract().test_rows_load_through_the_record_and_are_canonical(
                record, manager, {}
            )
        except pytest.skip.Exception as exc:
            return "skipped: " + str(exc.msg).split(";")[0]
        return "passed"

    return run


@pytest.mark.parametrize(
    ("row", "format", "problem"),
    [
        ({"messages": [{"role": "user", "content": "hi"}]}, "", "no assistant turn"),
        ({"messages": [{"role": "human", "content": "hi"}]}, "", "has role 'human'"),
        ({"text": ""}, "text", "non-empty 'text'"),
        (
            {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},
            "preference",
            "rejected_response",
        ),
        (
            {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]},
            "kto",
            "boolean 'label'",
        ),
        ("not a row", "", "must be a dict"),
    ],
)
def test_row_problem_names_what_is_not_canonical(row, format, problem):
    assert problem in row_problem(row, format)


def test_canonical_rows_have_no_problem():
    chat = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    assert row_problem({"messages": chat}) is None
    assert row_problem({"messages": chat, "rejected_response": "b"}, "preference") is None
    assert row_problem({"messages": chat, "label": False}, "kto") is None
    assert row_problem({"text": "some text"}, "text") is None
