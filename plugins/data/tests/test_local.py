"""Local files through martlet.load_dataset: every file type, folders, bad input, #N, columns,
skip reports."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import martlet
import pytest
from martlet.errors import ConfigError
from martlet_data.errors import BadRowError, DataError, EmptyDatasetError
from martlet_data.rows import Rows, RowStream, select

ROWS = [
    {"instruction": "Add 2 and 3.", "input": "", "output": "5"},
    {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]},
    {"query": "Capital of Peru?", "response": "Lima."},
]
CANONICAL = [
    {
        "messages": [
            {"role": "user", "content": "Add 2 and 3."},
            {"role": "assistant", "content": "5"},
        ]
    },
    {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},
    {
        "messages": [
            {"role": "user", "content": "Capital of Peru?"},
            {"role": "assistant", "content": "Lima."},
        ]
    },
]


def test_jsonl(write_jsonl):
    rows = martlet.load_dataset(str(write_jsonl(ROWS)))
    assert isinstance(rows, Rows)
    assert list(rows) == CANONICAL
    assert dict(rows.formats) == {"alpaca": 1, "sharegpt": 1, "query_response": 1}
    assert rows.report.skipped == 0


def test_json_array_is_streamed_item_by_item(tmp_path, monkeypatch):
    import martlet_data.readers as readers

    monkeypatch.setattr(readers, "_CHUNK", 7)  # items span many buffer refills
    path = tmp_path / "d.json"
    path.write_text(json.dumps(ROWS, indent=2), encoding="utf-8")
    assert list(martlet.load_dataset(str(path))) == CANONICAL
    path.write_text("  [ ]  ", encoding="utf-8")
    with pytest.raises(EmptyDatasetError, match="has no rows"):
        martlet.load_dataset(str(path))


def test_json_columnar(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"query": ["a", "b"], "response": ["A", "B"]}), encoding="utf-8")
    rows = martlet.load_dataset(str(path))
    assert [r["messages"][1]["content"] for r in rows] == ["A", "B"]


@pytest.mark.parametrize(
    "text,message",
    [
        ('{"query": ["a"], "response": ["A", "B"]}', "not columnar"),
        ('{"query": "a"}', "not columnar"),
        ("42", "not a JSON array or object"),
        ('[{"query": "a", "response": "A"} {"query": "b"}]', "item 2 (line 1)"),
        ('[{"query": "a", "response": "A"}, {"query": ', "item 2"),
        ('{"query": ["a"], ', "malformed JSON at line 1"),
    ],
)
def test_broken_json_files_are_errors_naming_the_file(tmp_path, text, message):
    path = tmp_path / "broken.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError) as info:
        martlet.load_dataset(str(path))
    assert str(path) in info.value.what and message in info.value.message()


def test_json_array_item_that_is_not_an_object(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('[{"text": "a"},\n "b"]', encoding="utf-8")
    with pytest.raises(BadRowError, match=r"d\.json, item 2 \(line 2\): wrong type"):
        martlet.load_dataset(str(path))


def test_csv_with_json_cells_and_text_labels(tmp_path):
    path = tmp_path / "d.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["prompt", "completion", "label"])
        writer.writerow(["2+2?", "4", "true"])
        writer.writerow(["2+3?", "6", "false"])
    rows = martlet.load_dataset(str(path))
    assert [r["label"] for r in rows] == [True, False]
    path.write_text(
        'messages\n"[{""role"": ""user"", ""content"": ""q""}, '
        '{""role"": ""assistant"", ""content"": ""a""}]"\n',
        encoding="utf-8",
    )
    assert list(martlet.load_dataset(str(path))) == [
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    ]


def test_csv_row_with_too_many_fields(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("query,response\na,b\nc,d,e\n", encoding="utf-8")
    with pytest.raises(BadRowError) as info:
        martlet.load_dataset(str(path))
    assert info.value.where == f"{path}, line 3" and info.value.reason == "wrong type"


def test_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist([{"query": "q", "response": "r"}] * 3), path)
    rows = martlet.load_dataset(str(path))
    assert len(rows) == 3 and rows[0]["messages"][1]["content"] == "r"
    stream = martlet.load_dataset(str(path), streaming=True)
    assert sum(1 for _ in stream) == 3


def test_broken_parquet_is_a_data_error(tmp_path):
    path = tmp_path / "d.parquet"
    path.write_bytes(b"not parquet")
    with pytest.raises(DataError, match="cannot read parquet file"):
        martlet.load_dataset(str(path))


def test_txt_lines_and_paragraphs(tmp_path):
    path = tmp_path / "book.txt"
    path.write_text("First line.\nSecond line.\n\n\nThird, after a gap.\n", encoding="utf-8")
    rows = martlet.load_dataset(str(path))
    assert [r["text"] for r in rows] == ["First line.", "Second line.", "Third, after a gap."]
    rows = martlet.load_dataset(str(path), txt_unit="paragraph")
    assert [r["text"] for r in rows] == ["First line.\nSecond line.", "Third, after a gap."]


def test_folder_of_mixed_files(tmp_path, write_jsonl):
    (tmp_path / "sub").mkdir()
    write_jsonl(ROWS[:1], "sub/a.jsonl")
    (tmp_path / "b.txt").write_text("plain text\n", encoding="utf-8")
    (tmp_path / ".hidden.jsonl").write_text("not json\n", encoding="utf-8")
    (tmp_path / "notes.md").write_text("ignored\n", encoding="utf-8")
    rows = martlet.load_dataset(str(tmp_path))
    assert list(rows) == [{"text": "plain text"}, CANONICAL[0]]  # b.txt sorts before sub/


def test_missing_file_empty_folder_and_unknown_suffix(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        martlet.load_dataset(str(tmp_path / "nope.jsonl"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no data files"):
        martlet.load_dataset(str(tmp_path / "empty"))
    odd = tmp_path / "data.xml"
    odd.write_text("<x/>")
    with pytest.raises(DataError, match="unknown file type '.xml'"):
        from martlet_data.sources import LocalSource

        LocalSource().read(str(odd))


# ------------------------------------------------------------------------ bad rows


BAD_FILE = [
    ROWS[0],
    '{"query": "broken',
    {"foo": 1},
    {"query": "q", "response": 5},
    {"query": "q", "response": "  "},
    {"prompt": "p", "chosen": "a"},
    {"prompt": "p", "chosen": "same", "rejected": "same"},
    {"prompt": "", "chosen": "a", "rejected": "b"},
    ROWS[2],
    '{"query": "also broken"',
]

EXPECTED_ERRORS = [
    (2, "malformed JSON", "column"),
    (3, "no usable fields", "columns: foo"),
    (4, "wrong type", "'response' must be a string"),
    (5, "empty assistant turn", "'response' is empty"),
    (6, "missing rejected response", "'rejected'"),
    (7, "chosen equals rejected", "identical"),
    (8, "empty prompt", "'prompt' is empty"),
]


@pytest.mark.parametrize("line,reason,detail", EXPECTED_ERRORS)
def test_each_bad_row_stops_with_file_line_and_problem(write_jsonl, line, reason, detail):
    rows = [ROWS[0]] * (line - 1) + [BAD_FILE[line - 1]]
    path = write_jsonl(rows)
    with pytest.raises(BadRowError) as info:
        martlet.load_dataset(str(path))
    error = info.value
    assert error.what == f"{path}, line {line}: {reason}"
    assert detail in error.why
    assert "--on-bad-rows skip" in error.fix


def test_skip_reports_every_bad_row_by_reason(write_jsonl, caplog):
    path = write_jsonl(BAD_FILE)
    with caplog.at_level("WARNING", logger="martlet.data"):
        rows = martlet.load_dataset(str(path), on_bad_rows="skip")
    assert list(rows) == [CANONICAL[0], CANONICAL[2]]
    report = rows.report
    assert report.skipped == 8
    assert report.counts == {
        "malformed JSON": 2,
        "no usable fields": 1,
        "wrong type": 1,
        "empty assistant turn": 1,
        "missing rejected response": 1,
        "chosen equals rejected": 1,
        "empty prompt": 1,
    }
    assert report.examples["malformed JSON"][0].startswith(f"{path}, line 2: ")
    assert report.to_dict()["by_reason"]["malformed JSON"] == 2
    assert "skipped 8 bad rows: 2 malformed JSON" in caplog.text


def test_skip_report_of_a_stream_is_filled_as_it_is_read(write_jsonl):
    stream = martlet.load_dataset(str(write_jsonl(BAD_FILE)), on_bad_rows="skip", streaming=True)
    assert isinstance(stream, RowStream)
    assert len(list(stream)) == 2 and stream.report.skipped == 8
    assert len(list(stream)) == 2 and stream.report.skipped == 8  # a second pass starts afresh


def test_streaming_stops_at_the_first_bad_row_by_default(write_jsonl):
    stream = martlet.load_dataset(str(write_jsonl(BAD_FILE)), streaming=True)
    it = iter(stream)
    assert next(it) == CANONICAL[0]
    with pytest.raises(BadRowError, match="line 2: malformed JSON"):
        next(it)


def test_invalid_utf8_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'{"text": "ok"}\n{"text": "\xff"}\n')
    with pytest.raises(BadRowError, match="line 2: malformed JSON"):
        martlet.load_dataset(str(path))


def test_non_object_line(write_jsonl):
    with pytest.raises(BadRowError, match="line 1: wrong type") as info:
        martlet.load_dataset(str(write_jsonl(["[1, 2]"])))
    assert "got list" in info.value.why


# ------------------------------------------------------------------------ options


def test_columns_option_maps_and_keeps(write_jsonl):
    path = write_jsonl([{"ask": "2+2?", "say": "4", "level": "easy", "junk": 0}])
    rows = martlet.load_dataset(
        str(path), columns={"ask": "query", "say": "response", "level": "level"}
    )
    assert rows[0] == {
        "messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}],
        "level": "easy",
    }


def test_columns_option_as_json_text(write_jsonl):
    path = write_jsonl([{"ask": "q", "say": "a"}])
    rows = martlet.load_dataset(str(path), columns='{"ask": "query", "say": "response"}')
    assert rows[0]["messages"][0]["content"] == "q"


@pytest.mark.parametrize(
    "options,message",
    [
        ({"columns": "{not json"}, "expects a JSON object"),
        ({"columns": {"a": 1}}, "must map column names"),
        ({"on_bad_rows": "ignore"}, "on_bad_rows must be 'error' or 'skip'"),
        ({"format": "yaml"}, "unknown format 'yaml'"),
        ({"hub": "github"}, "unknown dataset hub 'github'"),
        ({"colums": {}}, "unknown dataset option 'colums'"),
        ({"txt_unit": "word"}, "txt_unit must be"),
        ({"model_name": ["a", "b", "c"]}, "one or two names"),
    ],
)
def test_bad_options_are_config_errors(write_jsonl, options, message):
    with pytest.raises(ConfigError) as info:
        martlet.load_dataset(str(write_jsonl(ROWS)), **options)
    assert message in info.value.message()


def test_format_option_forces_a_format(write_jsonl):
    path = write_jsonl([{"query": "q", "response": "r", "text": "t"}])
    assert martlet.load_dataset(str(path))[0]["messages"]
    assert martlet.load_dataset(str(path), format="text")[0] == {"text": "t"}


def test_count_samples_deterministically(write_jsonl):
    rows = [{"text": f"row {i}"} for i in range(50)]
    path = write_jsonl(rows)
    first = martlet.load_dataset(f"{path}#10")
    again = martlet.load_dataset(f"{path}#10")
    other_seed = martlet.load_dataset(f"{path}#10", seed=7)
    assert first == again and len(first) == 10
    assert first != other_seed
    texts = [r["text"] for r in first]
    assert texts == sorted(texts, key=lambda t: int(t.split()[1]))  # original order kept
    assert len(martlet.load_dataset(f"{path}#50")) == 50
    up = martlet.load_dataset(f"{path}#120")
    assert len(up) == 120 and up[:50] == up[50:100] == martlet.load_dataset(str(path))


def test_count_on_a_stream_takes_the_first_rows(write_jsonl):
    path = write_jsonl([{"text": f"row {i}"} for i in range(20)])
    stream = martlet.load_dataset(f"{path}#5", streaming=True)
    assert [r["text"] for r in stream] == [f"row {i}" for i in range(5)]
    assert [r["text"] for r in stream.take(2)] == ["row 0", "row 1"]


def test_select_edges():
    assert select([], 5, 0) == []
    assert select([1, 2, 3], None, 0) == [1, 2, 3]


def test_subsets_on_a_local_file_are_an_error(write_jsonl):
    path = write_jsonl(ROWS)
    with pytest.raises(ConfigError, match="has no subsets"):
        martlet.load_dataset(f"{path}:train")


def test_a_path_with_hash_and_colon_in_its_name_is_that_path(tmp_path):
    path = tmp_path / "odd:name#1.jsonl"
    path.write_text('{"text": "x"}\n', encoding="utf-8")
    assert martlet.load_dataset(str(path)) == [{"text": "x"}]


def test_paths_with_tilde(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "d.jsonl").write_text('{"text": "home"}\n', encoding="utf-8")
    assert martlet.load_dataset("~/d.jsonl") == [{"text": "home"}]


def test_relative_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("data").mkdir()
    Path("data/train.jsonl").write_text('{"text": "rel"}\n', encoding="utf-8")
    assert martlet.load_dataset("data/train.jsonl") == [{"text": "rel"}]
    assert martlet.load_dataset("data") == [{"text": "rel"}]


def test_txt_that_is_not_utf8(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match="is not UTF-8 text"):
        martlet.load_dataset(str(path))


def test_seed_must_be_an_integer(write_jsonl):
    with pytest.raises(ConfigError, match="seed must be an integer"):
        martlet.load_dataset(str(write_jsonl(ROWS)), seed="x")
