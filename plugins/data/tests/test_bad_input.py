"""Input the training encoder would reject is found where rows are read (named by file and line,
skippable with --on-bad-rows skip), and a malformed ``#N`` says what is wrong with it."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from martlet.errors import ConfigError
from martlet_data.errors import BadRowError, BadRowReport
from martlet_data.formats import to_canonical, to_prompt
from martlet_data.loading import load_datasets
from martlet_data.rows import canonical_rows

TRAIN_PLUGINS = ("train", "hf", "data", "peft", "accel")

GOOD = {"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}
ASSISTANT_FIRST = {
    "messages": [
        {"role": "assistant", "content": "hi"},
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": "y"},
    ]
}


# ------------------------------------------------------------------------ rows sft cannot encode


@pytest.mark.parametrize(
    "row,reason,detail",
    [
        (ASSISTANT_FIRST, "starts with assistant turn", "messages[0] is an assistant message"),
        (
            {"conversations": [{"from": "gpt", "value": "hi"}, {"from": "human", "value": "x"}]},
            "starts with assistant turn",
            "messages[0]",
        ),
        (  # a pair of whole conversations with no prompt before them
            {
                "chosen": [{"role": "assistant", "content": "a"}],
                "rejected": [{"role": "assistant", "content": "b"}],
            },
            "starts with assistant turn",
            "messages[0]",
        ),
        (
            {**GOOD, "rejected_messages": [{"role": "assistant", "content": "b"}]},
            "starts with assistant turn",
            "rejected_messages[0]",
        ),
        ({**ASSISTANT_FIRST, "label": True}, "starts with assistant turn", "messages[0]"),
        ({**GOOD, "tools": 5}, "wrong type", "'tools' must be a list of tool objects"),
        ({**GOOD, "tools": ["get_weather"]}, "wrong type", "'tools' must be a list"),
        ({**GOOD, "tools": "get_weather"}, "wrong type", "'tools' must be a list"),
    ],
)
def test_rows_the_encoder_rejects_are_bad_rows(row, reason, detail):
    report = BadRowReport()
    raw = [("d.jsonl, line 1", row), ("d.jsonl, line 2", GOOD)]
    with pytest.raises(BadRowError) as info:
        list(canonical_rows(raw, report=report, formats=Counter()))
    assert info.value.where == "d.jsonl, line 1" and info.value.reason == reason
    assert detail in info.value.why
    kept = list(canonical_rows(raw, report=report, formats=Counter(), on_bad_rows="skip"))
    assert len(kept) == 1 and report.counts == Counter({reason: 1})


@pytest.mark.parametrize(
    "row",
    [
        # a system column goes first, so the conversation does not start with the assistant
        {"system": "be brief", **ASSISTANT_FIRST},
        # an opening assistant turn that is not learned from is context, which templates render
        {"messages": [{**ASSISTANT_FIRST["messages"][0], "loss": False}, *GOOD["messages"]]},
        {"prompt": "p", "chosen": [{"role": "assistant", "content": "a"}], "rejected": "b"},
    ],
)
def test_rows_the_encoder_accepts_are_kept(row):
    out, _ = to_canonical(row)
    assert out["messages"][-1] == {"role": "assistant", "content": out["messages"][-1]["content"]}


def test_tools_as_json_text_are_parsed_for_the_template():
    tool = {"type": "function", "function": {"name": "f", "parameters": {}}}
    out, _ = to_canonical({**GOOD, "tools": json.dumps([tool])})
    assert out["tools"] == [tool]
    assert to_canonical({**GOOD, "tools": tool})[0]["tools"] == [tool]
    assert "tools" not in to_canonical({**GOOD, "tools": ""})[0]


def test_a_prompt_may_still_start_with_the_assistant():
    out, _ = to_prompt(ASSISTANT_FIRST)
    assert [m["role"] for m in out["messages"]] == ["assistant", "user"]
    assert out["reference"] == "y"


def test_dataset_info_names_the_file_and_line_and_skips(martlet_cli, write_jsonl):
    path = write_jsonl([GOOD, ASSISTANT_FIRST, GOOD])
    result = martlet_cli("dataset", "info", str(path))
    assert result.exit_code != 0
    assert f"{path}, line 2: starts with assistant turn" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    result = martlet_cli("dataset", "info", str(path), "--on-bad-rows", "skip")
    assert result.exit_code == 0, result.stderr
    assert "rows:      2" in result.stdout and "bad rows:  1 skipped" in result.stdout
    assert f"1 starts with assistant turn: {path}, line 2" in result.stdout


@pytest.fixture
def train_cli(martlet_manager, martlet_cli):
    for module in ("martlet_train", "martlet_hf", "martlet_peft", "martlet_accel"):
        pytest.importorskip(module, reason="`martlet sft` needs the train, hf, peft, accel plugins")
    martlet_manager(*TRAIN_PLUGINS)
    return martlet_cli


def _sft_args(model_dir, out, dataset, *extra):
    return [
        "sft",
        "--model",
        str(model_dir),
        "--dataset",
        str(dataset),
        "--output-dir",
        str(out),
        "--disable-progress-bar",
        "--max-steps",
        "1",
        "--seed",
        "0",
        *extra,
    ]


def test_sft_names_the_file_and_line_and_skips(
    train_cli, tiny_model_dir, write_jsonl, tmp_path, caplog
):
    path = write_jsonl([GOOD, ASSISTANT_FIRST])
    result = train_cli(*_sft_args(tiny_model_dir, tmp_path / "run", path))
    assert result.exit_code != 0
    assert f"{path}, line 2: starts with assistant turn" in result.stderr
    assert "--on-bad-rows skip" in result.stderr
    assert not (tmp_path / "run" / "config.yaml").exists()  # found before the model loads
    out = tmp_path / "skipped"
    result = train_cli(*_sft_args(tiny_model_dir, out, path, "--on-bad-rows", "skip"))
    assert result.exit_code == 0, result.stderr
    assert "skipped 1 bad row: 1 starts with assistant turn" in caplog.text
    assert (out / "config.yaml").exists()


# ------------------------------------------------------------------------ #N


@pytest.mark.parametrize(
    "spec,given,example",
    [
        ("self-cognition#0", "'0'", "self-cognition#100"),
        ("sample-sft#-5", "'-5'", "sample-sft#100"),
        ("sample-sft#abc", "'abc'", "sample-sft#100"),
    ],
)
def test_a_bad_row_count_says_it_must_be_a_positive_integer(martlet_cli, spec, given, example):
    result = martlet_cli("dataset", "info", spec)
    assert result.exit_code == ConfigError.exit_code
    assert f"#N (the row count) in dataset spec {spec!r} must be a positive integer" in (
        result.stderr
    )
    assert f"got {given}" in result.stderr and f"e.g. {example}" in result.stderr
    assert "no dataset source" not in result.stderr and "Traceback" not in result.stderr


def test_sft_with_a_bad_row_count(train_cli, tiny_model_dir, tmp_path):
    result = train_cli(*_sft_args(tiny_model_dir, tmp_path / "run", "sample-sft#0"))
    assert result.exit_code == ConfigError.exit_code
    assert "must be a positive integer, got '0'" in result.stderr


def test_a_missing_file_with_a_hash_in_its_name_is_a_missing_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(Exception, match="'data#2.jsonl' does not exist"):
        load_datasets("data#2.jsonl")
    (tmp_path / "data#2.jsonl").write_text(json.dumps(GOOD) + "\n")
    assert load_datasets("data#2.jsonl") == [GOOD]


@pytest.mark.parametrize("spec", ["sample-sft#0", "sample-sft#-5", "sample-sft#abc"])
def test_the_python_api_says_what_is_wrong_with_a_row_count(martlet_manager, spec):
    """``martlet.load_dataset`` (what ``infer --input`` uses) reports the malformed ``#N``,
    not that no source can read the spec."""
    import martlet
    from martlet.errors import ConfigError

    martlet_manager("data")
    with pytest.raises(ConfigError, match="must be a positive integer"):
        martlet.load_dataset(spec)
