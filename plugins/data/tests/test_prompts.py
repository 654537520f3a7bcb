"""Rows to answer (inference and evaluation inputs): `prompts=True` / `to_prompt`."""

from __future__ import annotations

import json

import martlet
import pytest
from martlet_data.errors import RowProblem
from martlet_data.formats import to_prompt


@pytest.mark.parametrize(
    "row, messages, reference",
    [
        ({"messages": [{"role": "user", "content": "Q"}]}, [("user", "Q")], None),
        (
            {"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]},
            [("user", "Q")],
            "A",
        ),
        ({"conversations": [{"from": "human", "value": "Q"}]}, [("user", "Q")], None),
        ({"query": "Q"}, [("user", "Q")], None),
        ({"query": "Q", "response": "A", "system": "S"}, [("system", "S"), ("user", "Q")], "A"),
        ({"instruction": "I", "input": "X"}, [("user", "I\nX")], None),
        ({"instruction": "I", "output": "O"}, [("user", "I")], "O"),
        (
            {"question": "Q", "history": [["q0", "a0"]]},
            [("user", "q0"), ("assistant", "a0"), ("user", "Q")],
            None,
        ),
    ],
)
def test_formats_with_and_without_an_answer(row, messages, reference):
    out, _ = to_prompt(row)
    assert [(m["role"], m["content"]) for m in out["messages"]] == messages
    assert out["reference"] == reference


@pytest.mark.parametrize(
    "row, reason",
    [
        ({"messages": [{"role": "assistant", "content": "A"}]}, "empty prompt"),
        ({"messages": []}, "empty prompt"),
        ({"query": "  "}, "empty prompt"),
        ({"colour": "blue"}, "no usable fields"),
        ({"text": "just text"}, "no usable fields"),
    ],
)
def test_rows_with_nothing_to_answer(row, reason):
    with pytest.raises(RowProblem) as err:
        to_prompt(row)
    assert err.value.reason == reason


def test_load_dataset_with_prompts(tmp_path, martlet_manager):
    martlet_manager("data")
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps({"query": "Q1"}) + "\n" + json.dumps({"bad": 1}) + "\n")
    rows = martlet.load_dataset(str(path), prompts=True, on_bad_rows="skip")
    assert [r["messages"][-1]["content"] for r in rows] == ["Q1"]
    assert rows.report.skipped == 1
    with pytest.raises(Exception, match="line 1"):
        martlet.load_dataset(str(path))  # a training read still wants answers
