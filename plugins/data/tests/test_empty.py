"""A dataset that gives no rows is an error naming it and saying why: empty files of every
type, every row skipped as bad, a selection that keeps nothing, a folder with nothing in it —
read as a list, as a stream and by `martlet dataset prepare|info` (martlet-train tests its
`load_train_val`)."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import martlet
import pytest
from martlet_data.errors import BadRowError, DataError, EmptyDatasetError
from martlet_data.loading import load_datasets


def _empty_parquet(path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": pa.array([], pa.string())}), path)


# name -> (write the file, the reason the error gives)
EMPTY_FILES = {
    "empty.jsonl": (lambda p: p.write_bytes(b""), "the file is empty (0 bytes)"),
    "blank.jsonl": (lambda p: p.write_text("\n  \n\t\n"), "the file holds only blank lines"),
    "list.json": (lambda p: p.write_text(" [ ]\n"), "the file is an empty JSON array"),
    "empty.json": (lambda p: p.write_bytes(b""), "the file is empty (0 bytes)"),
    "spaces.json": (lambda p: p.write_text("  \n "), "the file holds only whitespace"),
    "columns.json": (
        lambda p: p.write_text('{"query": [], "response": []}'),
        "the file is a JSON object of empty columns",
    ),
    "header.csv": (
        lambda p: p.write_text("query,response\n"),
        "the file has a header line and no data rows",
    ),
    "empty.csv": (lambda p: p.write_bytes(b""), "the file is empty (0 bytes)"),
    "empty.parquet": (_empty_parquet, "the file holds a table of 0 rows"),
    "blank.txt": (lambda p: p.write_text("\n\n"), "the file holds only blank lines"),
}

# 5 rows: 2 not valid JSON, 2 without usable fields, 1 empty text
ALL_BAD = ["{broken", {"foo": 1}, {"text": ""}, '{"also": broken', {"bar": 2}]


@pytest.fixture
def empty_file(tmp_path):
    def make(name: str) -> Path:
        path = tmp_path / name
        EMPTY_FILES[name][0](path)
        return path

    return make


@pytest.mark.parametrize("streaming", [False, True], ids=["list", "stream"])
@pytest.mark.parametrize("name", list(EMPTY_FILES))
def test_an_empty_file_is_an_error_naming_it(empty_file, name, streaming):
    path = empty_file(name)
    rows = None
    with pytest.raises(EmptyDatasetError) as info:
        rows = martlet.load_dataset(str(path), streaming=streaming)
        list(rows)  # a stream is found empty when it is read
    error = info.value
    assert error.what == f"dataset {str(path)!r} has no rows"
    assert error.why == EMPTY_FILES[name][1]
    assert error.fix and error.rows == 0 and error.source == str(path)
    assert isinstance(error, DataError)  # the martlet.errors family: exit code 1
    assert rows is None or streaming  # a list is checked at once, before anything uses it


@pytest.mark.parametrize("streaming", [False, True], ids=["list", "stream"])
def test_every_row_skipped_is_an_error_counting_the_reasons(write_jsonl, streaming, caplog):
    path = write_jsonl(ALL_BAD)
    with caplog.at_level("WARNING", logger="martlet.data"):
        with pytest.raises(EmptyDatasetError) as info:
            list(martlet.load_dataset(str(path), on_bad_rows="skip", streaming=streaming))
    error = info.value
    assert error.what == f"dataset {str(path)!r}: 5 rows, all skipped"
    assert error.why.startswith("every row is bad: 2 malformed JSON (e.g. ")
    assert "2 no usable fields (e.g. " in error.why and "1 empty text (e.g. " in error.why
    assert f"{path}, line 1: " in error.why
    assert "--columns" in error.fix
    assert error.rows == 5 and error.report.skipped == 5
    assert "skipped 5 bad rows" not in caplog.text  # the error says it; no warning as well


def test_one_bad_row_alone_says_row(write_jsonl):
    with pytest.raises(EmptyDatasetError, match=r": 1 row, all skipped"):
        martlet.load_dataset(str(write_jsonl(["{broken"])), on_bad_rows="skip")


def test_all_bad_rows_without_skip_still_stop_at_the_first(write_jsonl):
    with pytest.raises(BadRowError, match="line 1: malformed JSON"):
        martlet.load_dataset(str(write_jsonl(ALL_BAD)))


def test_a_folder_of_empty_files_names_each(tmp_path):
    folder = tmp_path / "data"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.jsonl").write_bytes(b"")
    (folder / "sub" / "b.csv").write_text("query,response\n")
    for streaming in (False, True):
        with pytest.raises(EmptyDatasetError) as info:
            list(martlet.load_dataset(str(folder), streaming=streaming))
        assert info.value.what == f"dataset {str(folder)!r} has no rows"
        assert info.value.why == (
            "its 2 data files hold no rows: a.jsonl is empty (0 bytes); "
            "sub/b.csv has a header line and no data rows"
        )


def test_a_folder_with_one_empty_file_among_full_ones_is_fine(tmp_path, write_jsonl):
    write_jsonl([{"text": "a"}], "a.jsonl")
    (tmp_path / "b.jsonl").write_bytes(b"")
    assert list(martlet.load_dataset(str(tmp_path))) == [{"text": "a"}]


def test_an_empty_folder_is_an_error(tmp_path):
    (tmp_path / "nothing").mkdir()
    (tmp_path / "nothing" / "notes.md").write_text("not data\n")
    with pytest.raises(DataError, match="holds no data files") as info:
        martlet.load_dataset(str(tmp_path / "nothing"))
    assert str(tmp_path / "nothing") in info.value.what


def test_a_registered_dataset_whose_filter_keeps_nothing(tmp_path, write_jsonl):
    path = write_jsonl([{"text": " "}, {"text": "\t"}, "{broken"])
    martlet.register_dataset(
        "blank-texts", path=str(path), impl="martlet_data.preprocess:drop_blank_text"
    )
    for streaming in (False, True):
        with pytest.raises(EmptyDatasetError) as info:
            list(martlet.load_dataset("blank-texts", on_bad_rows="skip", streaming=streaming))
        error = info.value
        assert error.what == "dataset 'blank-texts': 3 rows, none kept"
        assert error.why.startswith(
            "2 left out by the dataset's preprocessor (nothing in them to use); "
            "1 skipped as bad: 1 malformed JSON (e.g. "
        )
    empty = tmp_path / "none.jsonl"
    empty.write_bytes(b"")
    martlet.register_dataset("no-rows", path=str(empty))
    with pytest.raises(EmptyDatasetError, match="dataset 'no-rows' has no rows") as info:
        martlet.load_dataset("no-rows")
    assert info.value.why == "the file is empty (0 bytes)"


def test_a_generated_dataset_with_no_rows(martlet_manager):
    from martlet import hookimpl
    from martlet.records import DatasetRecord

    module = types.ModuleType("gen_nothing_for_test")
    module.rows = lambda **options: iter(())
    sys.modules[module.__name__] = module
    try:

        class Hooks:
            @hookimpl
            def martlet_datasets(self):
                yield DatasetRecord(name="nothing", impl="gen_nothing_for_test:rows", summary="n")

        martlet.register_plugin(Hooks(), name="nothing")
        with pytest.raises(EmptyDatasetError, match="dataset 'nothing' has no rows") as info:
            martlet.load_dataset("nothing")
        assert info.value.why == "its generator gave no rows"
    finally:
        del sys.modules[module.__name__]


def test_a_hub_split_with_no_rows(monkeypatch):
    import martlet_data.hubs as hubs

    monkeypatch.setattr(hubs, "hf_rows", lambda *a, **k: lambda: iter(()))
    with pytest.raises(EmptyDatasetError) as info:
        martlet.load_dataset("mmlu:anatomy", split="dev")
    assert info.value.what == "dataset 'mmlu (huggingface::cais/mmlu)' has no rows"
    assert info.value.why == "its split 'dev' of subset anatomy has no rows"
    with pytest.raises(EmptyDatasetError) as info:
        martlet.load_dataset("org/rows")
    assert info.value.what == "dataset 'hf::org/rows' has no rows"
    assert info.value.why == "its split 'train' has no rows"


def test_a_count_selection_on_a_non_empty_stream_is_not_empty(write_jsonl):
    stream = martlet.load_dataset(
        f"{write_jsonl([{'text': 'a'}, {'text': 'b'}])}#1", streaming=True
    )
    assert list(stream) == [{"text": "a"}]
    assert list(stream.take(1)) == [{"text": "a"}]


def test_several_datasets_name_the_empty_one(tmp_path, write_jsonl):
    good = write_jsonl([{"text": "a"}], "good.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    with pytest.raises(EmptyDatasetError, match=f"dataset {str(empty)!r} has no rows"):
        load_datasets([str(good), str(empty)])
    stream = load_datasets([str(good), str(empty)], streaming=True)
    seen = []
    with pytest.raises(EmptyDatasetError, match=f"dataset {str(empty)!r} has no rows"):
        for row in stream:
            seen.append(row)
    assert seen == [{"text": "a"}]  # the stream was read up to the empty one


# ------------------------------------------------------------------------ the CLI


def _no_output(out: Path) -> bool:
    return not out.exists() and list(out.parent.glob(f".{out.name}.*")) == []


@pytest.mark.parametrize("streaming", [[], ["--streaming"]], ids=["list", "stream"])
@pytest.mark.parametrize("name", ["empty.jsonl", "blank.jsonl", "list.json", "header.csv"])
def test_prepare_an_empty_file_fails_and_writes_nothing(
    martlet_cli, empty_file, tmp_path, name, streaming
):
    path = empty_file(name)
    out = tmp_path / "out" / "x.jsonl"
    result = martlet_cli("dataset", "prepare", str(path), "--output", str(out), *streaming)
    assert result.exit_code == 1, result.stdout
    assert f"dataset {str(path)!r} has no rows" in result.stderr
    assert EMPTY_FILES[name][1] in result.stderr
    assert "Traceback" not in result.stderr and "wrote" not in result.stdout
    assert _no_output(out)


@pytest.mark.parametrize("streaming", [[], ["--streaming"]], ids=["list", "stream"])
def test_prepare_all_bad_rows_with_skip_fails_counting_reasons(
    martlet_cli, write_jsonl, tmp_path, streaming
):
    path = write_jsonl(ALL_BAD)
    out = tmp_path / "x.jsonl"
    result = martlet_cli(
        "dataset", "prepare", str(path), "--output", str(out), "--on-bad-rows", "skip", *streaming
    )
    assert result.exit_code == 1
    assert f"dataset {str(path)!r}: 5 rows, all skipped" in result.stderr
    assert "2 malformed JSON" in result.stderr and "2 no usable fields" in result.stderr
    assert "1 empty text" in result.stderr
    assert _no_output(out)


def test_prepare_an_empty_folder_fails(martlet_cli, tmp_path):
    folder = tmp_path / "nothing"
    folder.mkdir()
    out = tmp_path / "x.jsonl"
    result = martlet_cli("dataset", "prepare", str(folder), "--output", str(out))
    assert result.exit_code == 1
    assert f"folder {str(folder)!r} holds no data files" in result.stderr
    assert _no_output(out)


def test_prepare_leaves_an_existing_output_alone(martlet_cli, empty_file, tmp_path):
    out = tmp_path / "x.jsonl"
    out.write_text(json.dumps({"text": "kept"}) + "\n")
    path = empty_file("empty.jsonl")
    result = martlet_cli("dataset", "prepare", str(path), "--output", str(out), "--streaming")
    assert result.exit_code == 1 and "has no rows" in result.stderr
    assert out.read_text() == json.dumps({"text": "kept"}) + "\n"
    assert list(tmp_path.glob(".x.jsonl.*")) == []


def test_info_on_an_empty_file_fails(martlet_cli, empty_file):
    path = empty_file("header.csv")
    result = martlet_cli("dataset", "info", str(path))
    assert result.exit_code == 1
    assert f"dataset {str(path)!r} has no rows" in result.stderr
