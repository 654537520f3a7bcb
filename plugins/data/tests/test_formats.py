# ruff: noqa: E501  (the conversion tables keep one case per line)
"""Format conversion tables: each format, its edge cases, and every bad-row reason."""

from __future__ import annotations

import pytest
from martlet_data.errors import RowProblem
from martlet_data.formats import (
    FORMATS,
    detect_format,
    normalize_format,
    parse_transcript,
    rejected_conversation,
    row_kind,
    to_canonical,
)


def U(text):
    return {"role": "user", "content": text}


def A(text):
    return {"role": "assistant", "content": text}


def S(text):
    return {"role": "system", "content": text}


# (case id, raw row, expected format, expected canonical row)
GOOD = [
    # ---------------------------------------------------------------- OpenAI messages
    (
        "messages",
        {"messages": [U("hi"), A("hello")]},
        "messages",
        {"messages": [U("hi"), A("hello")]},
    ),
    (
        "messages-system-and-multi-turn",
        {"messages": [S("be brief"), U("a"), A("b"), U("c"), A("d")]},
        "messages",
        {"messages": [S("be brief"), U("a"), A("b"), U("c"), A("d")]},
    ),
    (
        "messages-system-column",
        {"messages": [U("a"), A("b")], "system": "sys"},
        "messages",
        {"messages": [S("sys"), U("a"), A("b")]},
    ),
    (
        "messages-loss-flags-and-tool-calls-kept",
        {
            "messages": [
                U("weather?"),
                {"role": "assistant", "content": None, "tool_calls": [{"name": "w"}]},
                {"role": "tool", "content": "sunny", "tool_call_id": "1"},
                {"role": "assistant", "content": "It is sunny.", "loss": False},
            ],
            "tools": [{"name": "w"}],
        },
        "messages",
        {
            "messages": [
                U("weather?"),
                {"role": "assistant", "content": "", "tool_calls": [{"name": "w"}]},
                {"role": "tool", "content": "sunny", "tool_call_id": "1"},
                {"role": "assistant", "content": "It is sunny.", "loss": False},
            ],
            "tools": [{"name": "w"}],
        },
    ),
    (
        "messages-openai-content-parts-and-images",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": "cat.png"}},
                        {"type": "text", "text": "What is this?"},
                    ],
                },
                A("A cat."),
            ]
        },
        "messages",
        {"messages": [U("<image>What is this?"), A("A cat.")], "images": ["cat.png"]},
    ),
    (
        "messages-from-value-spelling-and-json-text",
        {"messages": '[{"from": "human", "value": "q"}, {"from": "gpt", "value": "r"}]'},
        "messages",
        {"messages": [U("q"), A("r")]},
    ),
    (
        "messages-image-column-as-a-string",
        {"messages": [U("<image>describe"), A("a dog")], "images": "dog.jpg"},
        "messages",
        {"messages": [U("<image>describe"), A("a dog")], "images": ["dog.jpg"]},
    ),
    # ---------------------------------------------------------------- ShareGPT
    (
        "sharegpt",
        {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "r"}]},
        "sharegpt",
        {"messages": [U("q"), A("r")]},
    ),
    (
        "sharegpt-roles",
        {
            "conversations": [
                {"from": "system", "value": "s"},
                {"from": "human", "value": "q"},
                {"from": "function_call", "value": '{"name": "f"}'},
                {"from": "observation", "value": "42"},
                {"from": "gpt", "value": "It is 42."},
            ]
        },
        "sharegpt",
        {
            "messages": [
                S("s"),
                U("q"),
                A('{"name": "f"}'),
                {"role": "tool", "content": "42"},
                A("It is 42."),
            ]
        },
    ),
    (
        "sharegpt-system-column-and-extra-message-keys",
        {
            "conversations": [
                {"from": "human", "value": "q", "weight": None},
                {"from": "gpt", "value": "r", "weight": 1},
            ],
            "system": "sys",
        },
        "sharegpt",
        {"messages": [S("sys"), U("q"), A("r")]},
    ),
    # ---------------------------------------------------------------- Alpaca
    (
        "alpaca",
        {"instruction": "Add.", "input": "2 and 3", "output": "5"},
        "alpaca",
        {"messages": [U("Add.\n2 and 3"), A("5")]},
    ),
    (
        "alpaca-empty-input",
        {"instruction": "Say hi.", "input": "", "output": "Hi!"},
        "alpaca",
        {"messages": [U("Say hi."), A("Hi!")]},
    ),
    (
        "alpaca-no-input-column",
        {"instruction": "Say hi.", "output": "Hi!"},
        "alpaca",
        {"messages": [U("Say hi."), A("Hi!")]},
    ),
    (
        "alpaca-input-only",
        {"instruction": "", "input": "Translate: chat", "output": "cat"},
        "alpaca",
        {"messages": [U("Translate: chat"), A("cat")]},
    ),
    (
        "alpaca-system-and-history",
        {
            "instruction": "And 3+3?",
            "output": "6",
            "system": "math tutor",
            "history": [["1+1?", "2"], ["2+2?", "4"]],
        },
        "alpaca",
        {
            "messages": [
                S("math tutor"),
                U("1+1?"),
                A("2"),
                U("2+2?"),
                A("4"),
                U("And 3+3?"),
                A("6"),
            ]
        },
    ),
    # ---------------------------------------------------------------- query/response
    (
        "query-response",
        {"query": "q", "response": "r"},
        "query_response",
        {"messages": [U("q"), A("r")]},
    ),
    (
        "query-response-history-system",
        {"query": "q2", "response": "r2", "history": [["q1", "r1"]], "system": "s"},
        "query_response",
        {"messages": [S("s"), U("q1"), A("r1"), U("q2"), A("r2")]},
    ),
    (
        "prompt-completion",
        {"prompt": "p", "completion": "c"},
        "query_response",
        {"messages": [U("p"), A("c")]},
    ),
    (
        "question-answer",
        {"question": "2+2?", "answer": "4"},
        "query_response",
        {"messages": [U("2+2?"), A("4")]},
    ),
    (
        "history-as-json-text",
        {"query": "b", "response": "B", "history": '[["a", "A"]]'},
        "query_response",
        {"messages": [U("a"), A("A"), U("b"), A("B")]},
    ),
    # ---------------------------------------------------------------- preference
    (
        "prompt-chosen-rejected-strings",
        {"prompt": "2+2?", "chosen": "4", "rejected": "5"},
        "preference",
        {"messages": [U("2+2?"), A("4")], "rejected_response": "5"},
    ),
    (
        "question-system-chosen-rejected (orca pairs)",
        {"system": "s", "question": "q", "chosen": "good", "rejected": "bad"},
        "preference",
        {"messages": [S("s"), U("q"), A("good")], "rejected_response": "bad"},
    ),
    (
        "chosen-rejected-full-conversations (ultrafeedback)",
        {
            "prompt": "q",
            "chosen": [U("q"), A("good")],
            "rejected": [U("q"), A("bad")],
        },
        "preference",
        {"messages": [U("q"), A("good")], "rejected_response": "bad"},
    ),
    (
        "trl-conversational-prompt-and-answers",
        {"prompt": [U("q")], "chosen": [A("good")], "rejected": [A("bad")]},
        "preference",
        {"messages": [U("q"), A("good")], "rejected_response": "bad"},
    ),
    (
        "chosen-rejected-diverging-early",
        {"chosen": [U("a"), A("b"), U("c"), A("d")], "rejected": [U("a"), A("x"), U("c"), A("y")]},
        "preference",
        {
            "messages": [U("a"), A("b"), U("c"), A("d")],
            "rejected_messages": [U("a"), A("x"), U("c"), A("y")],
        },
    ),
    (
        "hh-rlhf-transcripts",
        {
            "chosen": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Capital of France?"
            "\n\nAssistant: Paris.",
            "rejected": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Capital of France?"
            "\n\nAssistant: Rome.",
        },
        "preference",
        {
            "messages": [U("Hi"), A("Hello!"), U("Capital of France?"), A("Paris.")],
            "rejected_response": "Rome.",
        },
    ),
    (
        "llama-factory-sharegpt-pairs",
        {
            "conversations": [{"from": "human", "value": "q"}],
            "chosen": {"from": "gpt", "value": "good"},
            "rejected": {"from": "gpt", "value": "bad"},
        },
        "preference",
        {"messages": [U("q"), A("good")], "rejected_response": "bad"},
    ),
    (
        "messages-plus-rejected-response",
        {"messages": [U("q"), A("good")], "rejected_response": "bad"},
        "preference",
        {"messages": [U("q"), A("good")], "rejected_response": "bad"},
    ),
    (
        "query-response-plus-rejected-response",
        {"query": "q", "response": "good", "rejected_response": "bad"},
        "preference",
        {"messages": [U("q"), A("good")], "rejected_response": "bad"},
    ),
    (
        "messages-plus-rejected-messages",
        {"messages": [U("q"), A("good")], "rejected_messages": [U("q2"), A("bad")]},
        "preference",
        {"messages": [U("q"), A("good")], "rejected_messages": [U("q2"), A("bad")]},
    ),
    # ---------------------------------------------------------------- KTO
    (
        "kto-messages-label",
        {"messages": [U("q"), A("r")], "label": True},
        "kto",
        {"messages": [U("q"), A("r")], "label": True},
    ),
    (
        "kto-prompt-completion-label-as-text",
        {"prompt": "q", "completion": "r", "label": "false"},
        "kto",
        {"messages": [U("q"), A("r")], "label": False},
    ),
    (
        "kto-conversational (trl)",
        {"prompt": [U("q")], "completion": [A("r")], "label": 1},
        "kto",
        {"messages": [U("q"), A("r")], "label": True},
    ),
    (
        "kto-sharegpt-label",
        {
            "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "r"}],
            "label": 0,
        },
        "kto",
        {"messages": [U("q"), A("r")], "label": False},
    ),
    # ---------------------------------------------------------------- text
    ("text", {"text": "Once upon a time."}, "text", {"text": "Once upon a time."}),
    ("content", {"content": "Raw text."}, "text", {"text": "Raw text."}),
    ("text-with-a-label-is-still-text", {"text": "x", "label": 1}, "text", {"text": "x"}),
]


@pytest.mark.parametrize("case,row,fmt,expected", GOOD, ids=[c[0] for c in GOOD])
def test_conversion_table(case, row, fmt, expected):
    assert detect_format(row) == fmt
    out, used = to_canonical(row)
    assert used == fmt
    assert out == expected


@pytest.mark.parametrize("case,row,fmt,expected", GOOD, ids=[c[0] for c in GOOD])
def test_forcing_the_detected_format_gives_the_same_row(case, row, fmt, expected):
    assert to_canonical(row, fmt)[0] == expected


# (case id, raw row, reason, words in the detail)
BAD = [
    ("no-usable-fields", {"foo": 1, "bar": "x"}, "no usable fields", "columns: bar, foo"),
    ("empty-row", {}, "no usable fields", "columns: none"),
    ("not-an-object", ["a", "b"], "wrong type", "must be an object"),
    ("messages-not-a-list", {"messages": "hello"}, "wrong type", "list of messages"),
    ("message-not-an-object", {"messages": ["hi", A("x")]}, "wrong type", "messages[0]"),
    ("message-without-role", {"messages": [{"content": "x"}, A("y")]}, "wrong type", "no role"),
    ("unknown-role", {"messages": [{"role": "narrator", "content": "x"}, A("y")]}, "unknown role", "narrator"),
    ("content-wrong-type", {"messages": [U("q"), {"role": "assistant", "content": 42}]}, "wrong type", "content must be a string"),
    ("loss-wrong-type", {"messages": [U("q"), {**A("r"), "loss": "yes"}]}, "wrong type", "loss must be true or false"),
    ("empty-assistant-turn", {"messages": [U("q"), A("  ")]}, "empty assistant turn", "messages[1]"),
    ("assistant-without-content", {"messages": [U("q"), {"role": "assistant"}]}, "empty assistant turn", "no content"),
    ("no-assistant-turn", {"messages": [S("s"), U("q")]}, "no assistant turn", "no assistant message"),
    ("empty-messages", {"messages": []}, "no assistant turn", "is empty"),
    ("empty-user-turn", {"messages": [U(""), A("r")]}, "empty prompt", "messages[0]"),
    ("sharegpt-empty-answer", {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": ""}]}, "empty assistant turn", "conversations[1]"),
    ("alpaca-empty-output", {"instruction": "x", "output": ""}, "empty assistant turn", "'output' is empty"),
    ("alpaca-empty-prompt", {"instruction": "", "input": "", "output": "x"}, "empty prompt", "is empty"),
    ("alpaca-output-wrong-type", {"instruction": "x", "output": 5}, "wrong type", "'output' must be a string"),
    ("query-empty-response", {"query": "q", "response": ""}, "empty assistant turn", "'response' is empty"),
    ("history-wrong-shape", {"query": "q", "response": "r", "history": [["only one"]]}, "wrong type", "history[0]"),
    ("bad-json-text", {"messages": "[{oops"}, "wrong type", "not valid JSON"),
    ("pair-missing-rejected", {"prompt": "q", "chosen": "a"}, "missing rejected response", "'rejected'"),
    ("pair-empty-rejected", {"prompt": "q", "chosen": "a", "rejected": " "}, "missing rejected response", "'rejected'"),
    ("pair-missing-chosen", {"prompt": "q", "rejected": "a"}, "missing chosen response", "'chosen'"),
    ("pair-identical", {"prompt": "q", "chosen": "same", "rejected": "same "}, "chosen equals rejected", "identical"),
    ("pair-identical-lists", {"chosen": [U("q"), A("a")], "rejected": [U("q"), A("a")]}, "chosen equals rejected", "identical"),
    ("pair-empty-prompt", {"prompt": "", "chosen": "a", "rejected": "b"}, "empty prompt", "'prompt' is empty"),
    ("pair-no-prompt", {"chosen": "a", "rejected": "b"}, "empty prompt", "no prompt column"),
    ("pair-empty-chosen-answer", {"prompt": "q", "chosen": " ", "rejected": "b"}, "missing chosen response", "'chosen'"),
    ("rejected-response-empty", {"messages": [U("q"), A("a")], "rejected_response": ""}, "missing rejected response", "rejected_response"),
    ("rejected-response-equal", {"messages": [U("q"), A("a")], "rejected_response": "a"}, "chosen equals rejected", "identical"),
    ("rejected-response-wrong-type", {"messages": [U("q"), A("a")], "rejected_response": 3}, "wrong type", "rejected_response"),
    ("kto-bad-label", {"messages": [U("q"), A("a")], "label": "maybe"}, "wrong type", "'label' must be true or false"),
    ("kto-label-2", {"messages": [U("q"), A("a")], "label": 2}, "wrong type", "'label'"),
    ("kto-no-conversation", {"prompt": "q", "label": True}, "no usable fields", "a KTO row needs"),
    ("text-empty", {"text": "   "}, "empty text", "'text' is empty"),
    ("text-wrong-type", {"text": ["a"]}, "wrong type", "'text' must be a string"),
    ("unknown-content-part", {"messages": [{"role": "user", "content": [{"type": "file"}]}, A("x")]}, "wrong type", "unknown content part"),
]  # fmt: skip


@pytest.mark.parametrize("case,row,reason,detail", BAD, ids=[c[0] for c in BAD])
def test_bad_rows_name_the_problem(case, row, reason, detail):
    with pytest.raises(RowProblem) as info:
        to_canonical(row)
    assert info.value.reason == reason
    assert detail in info.value.detail


def test_forced_format_that_does_not_fit_is_a_row_problem():
    with pytest.raises(RowProblem) as info:
        to_canonical({"text": "x"}, "alpaca")
    assert info.value.reason == "no usable fields"


def test_columns_rename_before_detection_and_mapped_extras_are_kept():
    row = {"q": "2+2?", "a": "4", "topic": "maths", "junk": 1}
    out, fmt = to_canonical(row, columns={"q": "query", "a": "response", "topic": "topic"})
    assert fmt == "query_response"
    assert out == {"messages": [U("2+2?"), A("4")], "topic": "maths"}


def test_a_mapped_column_replaces_ours():
    row = {"query": "old", "better": "new", "response": "r"}
    out, _ = to_canonical(row, columns={"better": "query"})
    assert out["messages"][0] == U("new")


def test_keep_carries_named_extras_but_not_consumed_columns():
    row = {"question": "q", "answer": "a", "subject": "s"}
    out, _ = to_canonical(row, keep=("subject", "question"))
    assert out == {"messages": [U("q"), A("a")], "subject": "s"}


def test_parse_transcript():
    assert parse_transcript("Human: a\n\nAssistant: b") == [U("a"), A("b")]
    assert parse_transcript("\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant: d") == [
        U("a"),
        A("b"),
        U("c"),
        A("d"),
    ]


def test_row_kind_and_rejected_conversation():
    pref = {"messages": [U("q"), A("a")], "rejected_response": "b"}
    assert row_kind(pref) == "preference"
    assert rejected_conversation(pref) == [U("q"), A("b")]
    assert row_kind({"messages": [U("q"), A("a")], "label": True}) == "kto"
    assert row_kind({"text": "x"}) == "text"
    assert row_kind({"messages": [U("q"), A("a")]}) == "messages"
    with pytest.raises(KeyError):
        rejected_conversation({"messages": []})


@pytest.mark.parametrize(
    "name,expected",
    [("auto", None), (None, None), ("ShareGPT", "sharegpt"), ("query-response", "query_response"),
     ("dpo", "preference"), ("pt", "text"), ("openai", "messages")],
)  # fmt: skip
def test_format_names_and_aliases(name, expected):
    assert normalize_format(name) == expected


def test_unknown_format_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown format 'csv'.*sharegpt"):
        normalize_format("csv")
    assert set(FORMATS) == {"messages", "sharegpt", "alpaca", "query_response", "preference",
                            "kto", "text"}  # fmt: skip
