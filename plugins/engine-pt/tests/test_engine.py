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


# ---------------------------------------------------------------------- token prompts


def prompt_ids(tokenizer, messages):
    text = ChatML(tokenizer).render(messages, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_generate_ids_gives_the_tokens_of_generate(engine, tiny_tokenizer):
    prompts = [prompt_ids(tiny_tokenizer, q) for q in QUESTIONS]
    ids = engine.generate_ids(prompts, max_new_tokens=12)
    answers = engine.generate(QUESTIONS, max_new_tokens=12)
    assert len(ids) == len(QUESTIONS) and all(isinstance(t, int) for row in ids for t in row)
    for row, answer in zip(ids, answers, strict=True):
        assert tiny_tokenizer.decode(row, skip_special_tokens=True) == answer.text
        assert len(row) == answer.completion_tokens
    # a batch equals one at a time (left padding changes nothing)
    assert ids == [engine.generate_ids([p], max_new_tokens=12)[0] for p in prompts]


def test_generate_ids_respects_max_new_tokens(engine, tiny_tokenizer):
    eos = set(engine._eos_ids())
    prompts = [prompt_ids(tiny_tokenizer, q) for q in QUESTIONS]
    for row in engine.generate_ids(prompts, max_new_tokens=3):
        assert len(row) == 3 or (0 < len(row) < 3 and row[-1] in eos)
    sampled = engine.generate_ids(prompts[:1], max_new_tokens=6, temperature=1.0, seed=5)
    assert sampled == engine.generate_ids(prompts[:1], max_new_tokens=6, temperature=1.0, seed=5)
    assert len(sampled[0]) <= 6


def test_generate_ids_ends_after_the_first_eos(engine, tiny_tokenizer):
    """Row 0 is forced to say EOS at once; the other row goes on, so row 0 is padded."""
    eos = tiny_tokenizer.eos_token_id

    def force_eos(module, args, output):
        output[0, :, eos] += 1e4
        return output

    handle = engine.model.lm_head.register_forward_hook(force_eos)
    try:
        prompts = [prompt_ids(tiny_tokenizer, q) for q in QUESTIONS[:2]]
        first, second = engine.generate_ids(prompts, max_new_tokens=5)
    finally:
        handle.remove()
    assert first == [eos]
    assert len(second) == 5 or second[-1] in engine._eos_ids()


def test_generate_ids_refuses_empty_prompts_and_bad_options(engine):
    assert engine.generate_ids([], max_new_tokens=2) == []
    with pytest.raises(ConfigError, match="has no tokens"):
        engine.generate_ids([[1, 2], []], max_new_tokens=2)
    with pytest.raises(ConfigError, match="--max-new-tokens must be positive"):
        engine.generate_ids([[1, 2]], max_new_tokens=0)


def test_a_training_command_finds_it_through_the_registry(
    martlet_manager, tiny_model, tiny_tokenizer
):
    """`martlet.load_engine` gives the engine of the installed backend that claims what the
    caller needs (rlhf's GKD asks for token ids), on the model in memory; a need no backend
    claims, or none installed, is an error naming what is installed."""
    import martlet
    from martlet.errors import MartletError, UnknownNameError

    martlet_manager("engine-pt")
    engine = martlet.load_engine(tiny_model, tiny_tokenizer, needs=("token-ids",))
    assert type(engine).__name__ == "PtEngine" and engine.model is tiny_model
    ids = tiny_tokenizer.encode("hello there", add_special_tokens=False)
    assert len(engine.generate_ids([ids], max_new_tokens=3)[0]) <= 3
    with pytest.raises(UnknownNameError, match="needs beam-search") as missing:
        martlet.load_engine(tiny_model, tiny_tokenizer, needs=("beam-search",))
    assert "installed: pt" in str(missing.value)
    with pytest.raises(MartletError, match="does not claim beam-search"):
        martlet.load_engine(tiny_model, tiny_tokenizer, backend="pt", needs=("beam-search",))
    martlet_manager()  # no backend at all
    with pytest.raises(UnknownNameError, match="pip install martlet-engine-pt"):
        martlet.load_engine(tiny_model, tiny_tokenizer, needs=("token-ids",))


def test_a_model_in_memory_goes_to_a_backend_that_generates_with_one(
    martlet_manager, tiny_model, tiny_tokenizer
):
    """Beside backends that load their own copy from disk (lmdeploy, sglang and vllm come
    first by name and claim token ids too), `martlet.load_engine` still picks the PyTorch
    engine: it alone claims "live-model". Before, GKD and online RL chose lmdeploy here and
    failed for want of CUDA."""
    import martlet
    from martlet import registry
    from martlet.api import LIVE_MODEL

    martlet_manager("engine-pt", "lmdeploy", "sglang", "vllm")
    engine = martlet.load_engine(tiny_model, tiny_tokenizer, needs=("token-ids",))
    assert type(engine).__name__ == "PtEngine" and engine.model is tiny_model
    claims = {
        r.name: LIVE_MODEL in r.capabilities for r in registry.records("inference_backends")
    }
    assert claims == {"pt": True, "lmdeploy": False, "sglang": False, "vllm": False}
