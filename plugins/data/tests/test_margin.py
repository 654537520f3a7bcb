"""A preference pair's optional `margin` (reward-model training) survives reading, encoding and
batching; a margin that is not a number is a bad row."""

from __future__ import annotations

import json

import pytest
from martlet.errors import MartletError


@pytest.fixture
def pairs_file(tmp_path):
    rows = [
        {"prompt": "What is 2+2?", "chosen": "4", "rejected": "5", "margin": 2},
        {
            "messages": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello"},
            ],
            "rejected_response": "Go away",
            "margin": 0.5,
        },
        {"prompt": "Capital of France?", "chosen": "Paris", "rejected": "Rome"},
    ]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_margins_reach_the_encoded_rows(martlet_manager, pairs_file, tiny_tokenizer):
    import martlet
    from martlet.examples import encode_rows

    martlet_manager("data", "hf")
    rows = list(martlet.load_dataset(str(pairs_file)))
    assert [r.get("margin") for r in rows] == [2.0, 0.5, None]
    template = martlet.load_template(tiny_tokenizer)
    encoded = encode_rows(rows, template)
    assert [r.get("margin") for r in encoded] == [2.0, 0.5, None]  # (batched: martlet-train)


def test_a_margin_that_is_not_a_number_is_a_bad_row(martlet_manager, tmp_path):
    import martlet

    martlet_manager("data")
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"prompt": "q", "chosen": "a", "rejected": "b", "margin": "x"}))
    with pytest.raises(MartletError, match="bad margin"):
        list(martlet.load_dataset(str(path)))
