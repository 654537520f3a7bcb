"""`martlet dataset list|info|prepare` end to end, in-process."""

from __future__ import annotations

import json

import pytest


def test_group_help_lists_the_subcommands(martlet_cli):
    result = martlet_cli("dataset", "--help")
    assert result.exit_code == 0
    for sub in ("list", "info", "prepare"):
        assert sub in result.stdout
    result = martlet_cli("dataset", "prepare", "--help")
    assert result.exit_code == 0
    for flag in ("--output", "--columns", "--on-bad-rows", "--model-name", "--streaming"):
        assert flag in result.stdout
    assert "--name" in result.stdout


def test_list(martlet_cli):
    result = martlet_cli("dataset", "list")
    assert result.exit_code == 0, result.stderr
    assert "ceval" in result.stdout and "hf::ceval/ceval-exam" in result.stdout
    assert "self-cognition" in result.stdout and "embedded" in result.stdout


def test_list_json_and_tags(martlet_cli):
    rows = json.loads(martlet_cli("dataset", "list", "--json").stdout)
    by_name = {r["name"]: r for r in rows}
    assert by_name["gsm8k"]["hub_ids"] == {
        "huggingface": "openai/gsm8k",
        "modelscope": "modelscope/gsm8k",
    }
    assert by_name["sample-sft"]["where"] == "embedded"
    embedded = json.loads(martlet_cli("dataset", "list", "--json", "--tag", "embedded").stdout)
    assert {r["name"] for r in embedded} == {
        "self-cognition",
        "sample-sft",
        "sample-dpo",
        "sample-kto",
        "sample-mcq",
        "sample-arith",
        "sample-rl",
        "sample-pt",
    }
    result = martlet_cli("dataset", "list", "--tag", "no-such-tag")
    assert "no datasets tagged" in result.stdout


def test_info(martlet_cli):
    result = martlet_cli("dataset", "info", "sample-dpo")
    assert result.exit_code == 0, result.stderr
    assert "rows:      300" in result.stdout
    assert "formats:   preference 300" in result.stdout
    report = json.loads(
        martlet_cli("dataset", "info", "sample-sft#10", "sample-pt#5", "--json").stdout
    )
    assert report["rows"] == 15 and report["kinds"] == {"messages": 10, "text": 5}
    assert report["bad_rows"]["skipped"] == 0


def test_info_reports_skipped_rows_by_reason(martlet_cli, write_jsonl):
    path = write_jsonl([{"text": "ok"}, "{broken", {"text": ""}, {"nothing": 1}, "{broken"])
    result = martlet_cli("dataset", "info", str(path), "--on-bad-rows", "skip")
    assert result.exit_code == 0, result.stderr
    assert "bad rows:  4 skipped" in result.stdout
    assert "2 malformed JSON" in result.stdout and f"{path}, line 2" in result.stdout
    assert "1 no usable fields" in result.stdout and "1 empty text" in result.stdout


def test_info_with_a_model_counts_tokens(martlet_cli, martlet_manager, tiny_model_dir):
    pytest.importorskip("martlet_hf", reason="martlet-hf loads the tokenizer and template")
    martlet_manager("data", "hf")
    result = martlet_cli(
        "dataset", "info", "sample-sft#20", "--model", str(tiny_model_dir), "--json"
    )
    assert result.exit_code == 0, result.stderr
    tokens = json.loads(result.stdout)["tokens"]
    assert tokens["rows"] == 20
    assert tokens["min"] <= tokens["p50"] <= tokens["p90"] <= tokens["p99"] <= tokens["max"]
    assert tokens["min"] <= tokens["mean"] <= tokens["max"] and tokens["total"] > 20 * 10
    text = martlet_cli("dataset", "info", "sample-pt#5", "--model", str(tiny_model_dir)).stdout
    assert "tokens:" in text and "p99" in text


def test_percentiles():
    from martlet_data.cli import percentile, token_stats

    values = list(range(1, 101))
    assert [percentile(values, q) for q in (50, 90, 99)] == [50, 90, 99]
    assert percentile([7], 99) == 7 and percentile([], 50) == 0
    assert token_stats([3, 1, 2]) == {
        "rows": 3,
        "total": 6,
        "min": 1,
        "mean": 2.0,
        "p50": 2,
        "p90": 3,
        "p99": 3,
        "max": 3,
    }


def test_prepare_self_cognition_writes_the_rows(martlet_cli, tmp_path):
    out = tmp_path / "x.jsonl"
    result = martlet_cli(
        "dataset",
        "prepare",
        "self-cognition",
        "--model-name",
        "Aria",
        "--model-author",
        "Acme Labs",
        "--output",
        str(out),
    )
    assert result.exit_code == 0, result.stderr
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) >= 100 and f"wrote {len(rows)} rows to {out}" in result.stdout
    assert rows[0]["messages"][1]["content"].count("Aria") >= 1
    assert all("{{" not in m["content"] for r in rows for m in r["messages"])


def test_prepare_self_cognition_with_chinese_names_in_ms_swift_spelling(martlet_cli, tmp_path):
    out = tmp_path / "x.jsonl"
    result = martlet_cli(
        "dataset",
        "prepare",
        "--dataset",
        "self-cognition#20",
        "--model_name",
        "Aria",
        "阿莉亚",
        "--model_author",
        "Acme",
        "艾克米",
        "--output",
        str(out),
    )
    assert result.exit_code == 0, result.stderr
    assert len(out.read_text(encoding="utf-8").splitlines()) == 20


def test_prepare_self_cognition_without_names_is_a_clear_error(martlet_cli, tmp_path):
    out = tmp_path / "x.jsonl"
    result = martlet_cli("dataset", "prepare", "self-cognition", "--output", str(out))
    assert result.exit_code == 2
    assert "needs --model-name and --model-author" in result.stderr
    assert not out.exists()


def test_prepare_by_name_flag_and_to_a_new_folder(martlet_cli, tmp_path):
    out = tmp_path / "new" / "dir" / "dpo.jsonl"
    result = martlet_cli("dataset", "prepare", "--name", "sample-dpo#7", "--output", str(out))
    assert result.exit_code == 0, result.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 7 and all("rejected_response" in r for r in rows)


def test_prepare_ceval_offline_is_a_clear_error(martlet_cli, tmp_path):
    out = tmp_path / "ceval.jsonl"
    result = martlet_cli("dataset", "prepare", "--name", "ceval", "--output", str(out))
    assert result.exit_code == 1
    assert "ceval/ceval-exam" in result.stderr and "Hugging Face" in result.stderr
    assert "--debug" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()


def test_prepare_stops_at_a_bad_row_and_leaves_no_file(martlet_cli, write_jsonl, tmp_path):
    path = write_jsonl([{"text": "a"}, {"text": "b"}, {"query": "q", "response": ""}])
    out = tmp_path / "out.jsonl"
    result = martlet_cli("dataset", "prepare", str(path), "--output", str(out), "--streaming")
    assert result.exit_code == 1
    assert f"{path}, line 3: empty assistant turn" in result.stderr
    assert "--on-bad-rows skip" in result.stderr
    assert not out.exists() and list(tmp_path.glob(".out.jsonl.*")) == []


def test_prepare_skips_bad_rows_when_asked(martlet_cli, write_jsonl, tmp_path):
    path = write_jsonl([{"text": "a"}, "{oops", {"query": "q", "response": ""}])
    out = tmp_path / "out.jsonl"
    result = martlet_cli(
        "dataset", "prepare", str(path), "--output", str(out), "--on-bad-rows", "skip"
    )
    assert result.exit_code == 0, result.stderr
    assert "wrote 1 rows" in result.stdout and "skipped 2 bad rows" in result.stdout
    assert "1 malformed JSON" in result.stderr and "1 empty assistant turn" in result.stderr


def test_prepare_with_columns_and_several_datasets(martlet_cli, write_jsonl, tmp_path):
    path = write_jsonl([{"ask": "q", "say": "a", "level": 3}])
    out = tmp_path / "out.jsonl"
    result = martlet_cli(
        "dataset",
        "prepare",
        str(path),
        "sample-pt#2",
        "--output",
        str(out),
        "--columns",
        '{"ask": "query", "say": "response", "level": "level"}',
    )
    assert result.exit_code == 0, result.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[0]["level"] == 3 and len(rows) == 3


@pytest.mark.parametrize(
    "args,message",
    [
        (["prepare", "--output", "x.jsonl"], "no dataset given"),
        (["prepare", "sample-pt"], "missing required option --output"),
        (["prepare", "sample-pt", "--output", "x.jsonl", "--columns", "{bad"], "JSON object"),
        (["prepare", "sample-pt", "--output", "x.jsonl", "--on-bad-rows", "maybe"], "error, skip"),
        (["info", "sample-pt", "--dataset-hub", "github"], "huggingface, modelscope"),
        (["info", "no-such-data"], "unknown dataset 'no-such-data'"),
        (["info", "sample-pt", "--dataset-format", "yaml"], "unknown format 'yaml'"),
    ],
)
def test_bad_arguments_are_clear_errors(martlet_cli, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    result = martlet_cli("dataset", *args)
    assert result.exit_code != 0
    assert message in result.stderr


def test_prepare_into_a_folder_is_an_error(martlet_cli, tmp_path):
    result = martlet_cli("dataset", "prepare", "sample-pt", "--output", str(tmp_path))
    assert result.exit_code != 0 and "is a folder" in result.stderr


def test_print_config(martlet_cli):
    result = martlet_cli("dataset", "prepare", "sample-pt", "--output", "o.jsonl", "--print-config")
    assert result.exit_code == 0
    assert "dataset:\n- sample-pt" in result.stdout and "output: o.jsonl" in result.stdout


def test_prepare_to_an_unwritable_place_is_a_clear_error(martlet_cli, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = martlet_cli("dataset", "prepare", "sample-pt", "--output", str(blocker / "o.jsonl"))
    assert result.exit_code == 1 and "cannot write" in result.stderr
    result = martlet_cli("dataset", "prepare", "sample-pt", "--output", " ")
    assert result.exit_code == 2 and "--output is empty" in result.stderr
