"""The pt engine on the tiny model: batching equals one-by-one, greedy is deterministic,
sampling follows the seed, stop strings cut, streaming adds up to the whole answer."""

from __future__ import annotations

import pytest
from martlet.errors import ConfigError
from martlet_engine_pt.engine import PtEngine
from martlet_sdk.contracts import InferenceBackendContract


class TestBackendRecord(InferenceBackendContract):
    @pytest.fixture
    def plugin(self):
        return "engine-pt"

    @pytest.fixture
    def record_name(self):
        return "pt"


class ChatML:
    """The tiny tokenizer's own chat template, as a template object."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def render(self, messages, *, add_generation_prompt=False):
        return self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=add_generation_prompt
        )


@pytest.fixture
def engine(tiny_model, tiny_tokenizer):
    return PtEngine(tiny_model, tiny_tokenizer, template=ChatML(tiny_tokenizer))


def chat(text):
    return [{"role": "user", "content": text}]


QUESTIONS = [chat("What is the capital of France?"), chat("Two plus two?"), chat("Hi")]


def test_a_batch_gives_the_same_greedy_answers_as_one_at_a_time(engine):
    batched = engine.generate(QUESTIONS, max_new_tokens=12)
    single = [engine.generate([q], max_new_tokens=12)[0] for q in QUESTIONS]
    assert [c.text for c in batched] == [c.text for c in single]
    assert all(c.completion_tokens <= 12 and c.prompt_tokens > 5 for c in batched)
    assert {c.finish_reason for c in batched} <= {"stop", "length"}


def test_sampling_follows_the_seed(engine):
    a = engine.generate(QUESTIONS[:1], max_new_tokens=16, temperature=1.0, seed=3)[0].text
    b = engine.generate(QUESTIONS[:1], max_new_tokens=16, temperature=1.0, seed=3)[0].text
    others = {
        engine.generate(QUESTIONS[:1], max_new_tokens=16, temperature=1.0, seed=s)[0].text
        for s in range(4, 9)
    }
    assert a == b
    assert len(others | {a}) > 1


def test_stop_strings_cut_the_answer(engine):
    full = engine.generate(QUESTIONS[:1], max_new_tokens=20)[0].text
    assert len(full) > 3
    stop = full[2:4]
    cut = engine.generate(QUESTIONS[:1], max_new_tokens=20, stop=[stop])[0]
    assert cut.text == full[: full.find(stop)] and cut.finish_reason == "stop"


def test_streaming_adds_up_to_the_whole_answer(engine):
    full = engine.generate(QUESTIONS[:1], max_new_tokens=15)[0].text
    pieces = list(engine.stream(QUESTIONS[0], max_new_tokens=15))
    assert "".join(pieces) == full and len(pieces) > 1
    stop = full[3:5]
    streamed = "".join(engine.stream(QUESTIONS[0], max_new_tokens=15, stop=[stop]))
    assert streamed == full[: full.find(stop)]


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(max_new_tokens=0), "--max-new-tokens must be positive"),
        (dict(temperature=-1), "--temperature"),
        (dict(top_p=0), "--top-p"),
        (dict(top_k=-2), "--top-k"),
    ],
)
def test_bad_generation_options_are_clear_errors(engine, bad, message):
    with pytest.raises(ConfigError, match=message):
        engine.generate(QUESTIONS[:1], **bad)
