"""The built-in registry and the preprocessors of its hub datasets (fed rows shaped like the
real datasets' rows, since nothing is downloaded here)."""

from __future__ import annotations

import re

import martlet
import pytest
from martlet_data.catalog import CEVAL_SUBJECTS, CMMLU_SUBJECTS, DATASETS, HUB_DATASETS
from martlet_data.errors import RowProblem
from martlet_data.formats import to_canonical
from martlet_data.preprocess import (
    arc,
    boolq,
    dolly,
    drop_blank_text,
    gsm8k,
    hellaswag,
    lettered,
    lima,
    mcq,
    mmlu,
    openorca,
    piqa,
    stack_exchange_paired,
    truthfulqa_mc1,
    winogrande,
)

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def test_the_registry_has_the_datasets_the_issue_names():
    names = {r.name for r in DATASETS}
    required = {
        "alpaca-gpt4-en",
        "alpaca-gpt4-zh",
        "sharegpt-gpt4",
        "sharegpt",
        "ceval",
        "mmlu",
        "cmmlu",
        "gsm8k",
        "hh-rlhf",
        "ultrafeedback-binarized",
        "self-cognition",
        "sample-sft",
        "sample-dpo",
        "sample-kto",
        "sample-mcq",
        "sample-pt",
    }
    assert required <= names
    assert len(HUB_DATASETS) >= 30
    assert len(names) == len(DATASETS)


@pytest.mark.parametrize("record", HUB_DATASETS, ids=lambda r: r.name)
def test_hub_records_are_well_formed(record):
    assert record.hub_ids and set(record.hub_ids) <= {"huggingface", "modelscope"}
    assert all(HUB_ID.match(i) for i in record.hub_ids.values()), record.hub_ids
    assert record.splits and record.summary and record.tags
    if record.impl:
        fn = record.load()
        assert callable(fn)


def test_subject_lists():
    assert len(CEVAL_SUBJECTS) == len(set(CEVAL_SUBJECTS)) == 52
    assert len(CMMLU_SUBJECTS) == len(set(CMMLU_SUBJECTS)) == 67


def test_records_are_registered_through_the_plugin():
    registry = martlet.get_manager().registry
    assert registry.get("datasets", "C-Eval").name == "ceval"
    assert registry.get("datasets", "dolly").name == "dolly-15k"
    assert {r.origin for r in registry.records("datasets")} == {"martlet-data"}


def _run(fn, row):
    """A preprocessor, then conversion, as the named source does it."""
    out = fn(row)
    canonical, _ = to_canonical(out, keep=getattr(fn, "keep", ()))
    return canonical


def test_ceval_and_cmmlu_rows():
    ceval = {
        "id": 0,
        "question": "1+1=?",
        "A": "1",
        "B": "2",
        "C": "3",
        "D": "4",
        "answer": "B",
        "explanation": "",
    }
    row = _run(lettered, ceval)
    assert row["answer"] == "B" and row["choices"] == ["1", "2", "3", "4"]
    assert row["messages"][1]["content"] == "B"
    assert "A. 1\nB. 2\nC. 3\nD. 4" in row["messages"][0]["content"]
    cmmlu = {
        "Question": "中国的首都是？",
        "A": "上海",
        "B": "北京",
        "C": "广州",
        "D": "深圳",
        "Answer": "B",
    }
    row = _run(lettered, cmmlu)
    assert row["answer"] == "B" and row["messages"][0]["content"].endswith(
        "请直接回答正确选项的字母。"
    )


def test_mmlu_row():
    raw = {
        "question": "2+2?",
        "subject": "elementary_mathematics",
        "choices": ["3", "4", "5", "6"],
        "answer": 1,
    }
    row = _run(mmlu, raw)
    assert row["answer"] == "B" and row["subject"] == "elementary_mathematics"


def test_arc_row_with_numeric_labels():
    raw = {
        "id": "x",
        "question": "Which is a gas?",
        "choices": {"text": ["ice", "steam", "wood"], "label": ["1", "2", "3"]},
        "answerKey": "2",
    }
    row = _run(arc, raw)
    assert row["choices"] == ["ice", "steam", "wood"] and row["answer"] == "B"


def test_hellaswag_truthfulqa_boolq_winogrande_piqa():
    row = _run(
        hellaswag,
        {
            "ctx": "A man sits down",
            "endings": ["a", "b", "c", "d"],
            "label": "2",
            "activity_label": "Sitting",
        },
    )
    assert row["answer"] == "C" and row["subject"] == "Sitting"
    tq = {
        "question": "Is the Earth flat?",
        "mc1_targets": {
            "choices": ["No, it is round.", "Yes.", "Only in places."],
            "labels": [1, 0, 0],
        },
    }
    row = _run(truthfulqa_mc1, tq)
    assert row["choices"][ord(row["answer"]) - 65] == "No, it is round."
    assert _run(truthfulqa_mc1, tq) == row  # the shuffle is seeded by the question
    row = _run(
        boolq, {"question": "is water wet", "passage": "Water is a liquid.", "answer": False}
    )
    assert row["choices"] == ["yes", "no"] and row["answer"] == "B"
    row = _run(
        winogrande,
        {
            "sentence": "The cup fell because _ was slippery.",
            "option1": "the cup",
            "option2": "the table",
            "answer": "1",
        },
    )
    assert row["answer"] == "A"
    row = _run(piqa, {"goal": "Open a jar", "sol1": "Twist the lid", "sol2": "Eat it", "label": 0})
    assert row["answer"] == "A" and row["choices"][0] == "Twist the lid"


def test_gsm8k_row():
    raw = {
        "question": "Tom has 3 apples and buys 4. How many?",
        "answer": "He has 3 + 4 = <<3+4=7>>7 apples.\n#### 7",
    }
    row = _run(gsm8k, raw)
    assert row["answer"] == "7"
    assert row["messages"][1]["content"].endswith("The answer is 7.")


def test_dolly_lima_openorca_stack_exchange_wikitext():
    row = _run(
        dolly,
        {
            "instruction": "Summarise.",
            "context": "Cats sleep a lot.",
            "response": "Cats sleep.",
            "category": "summarization",
        },
    )
    assert row["messages"][0]["content"] == "Summarise.\n\nCats sleep a lot."
    assert row["category"] == "summarization"
    row = _run(lima, {"conversations": ["q1", "a1", "q2", "a2"], "source": "x"})
    assert [m["role"] for m in row["messages"]] == ["user", "assistant"] * 2
    row = _run(
        openorca, {"id": "1", "system_prompt": "Be brief.", "question": "q", "response": "r"}
    )
    assert row["messages"][0] == {"role": "system", "content": "Be brief."}
    row = _run(stack_exchange_paired, {"question": "q", "response_j": "good", "response_k": "bad"})
    assert row["rejected_response"] == "bad"
    assert drop_blank_text({"text": " \n"}) == []
    assert drop_blank_text({"text": " = Title = \n"}) == [{"text": " = Title = \n"}]


@pytest.mark.parametrize(
    "fn,row,reason",
    [
        (
            lettered,
            {"question": "q", "A": "1", "B": "2", "C": "3", "D": "4", "answer": ""},
            "missing field",
        ),
        (
            lettered,
            {"question": "q", "A": "1", "B": "2", "C": "3", "D": "4", "answer": "E"},
            "wrong type",
        ),
        (lettered, {"question": "q", "A": "1"}, "missing field"),
        (mmlu, {"question": "q", "choices": ["a", "b"], "answer": 5}, "wrong type"),
        (mmlu, {"question": "", "choices": ["a", "b"], "answer": 0}, "missing field"),
        (
            arc,
            {"question": "q", "choices": {"text": ["a"], "label": ["A"]}, "answerKey": "B"},
            "wrong type",
        ),
        (hellaswag, {"ctx": "c", "endings": ["a", "b", "c", "d"], "label": ""}, "missing field"),
        (
            truthfulqa_mc1,
            {"question": "q", "mc1_targets": {"choices": ["a", "b"], "labels": [1, 1]}},
            "wrong type",
        ),
        (boolq, {"question": "q", "passage": "p", "answer": "yes"}, "wrong type"),
        (
            winogrande,
            {"sentence": "s", "option1": "a", "option2": "b", "answer": "3"},
            "wrong type",
        ),
        (piqa, {"goal": "g", "sol1": "a", "sol2": "b", "label": -1}, "wrong type"),
        (gsm8k, {"question": "q", "answer": "no final line"}, "missing field"),
        (mcq, {"question": "q", "choices": "abcd", "answer": "A"}, "wrong type"),
        (lima, {"conversations": [1, 2]}, "wrong type"),
    ],
)
def test_preprocessors_raise_row_problems(fn, row, reason):
    with pytest.raises(RowProblem) as info:
        fn(row)
    assert info.value.reason == reason
