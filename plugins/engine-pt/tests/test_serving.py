"""Continuous batching (BatchingEngine): requests decoded together, joining and leaving between
steps, give what each would get alone — the same greedy tokens as transformers' generate, the
same sampled tokens for the same seed, the log-probabilities of the model's own forward pass —
and the batch mixes adapters, cancels, refuses and drains as the serving contract says."""

from __future__ import annotations

import threading
import time

import pytest
import torch
from martlet.generation import BadRequestError, QueueFullError, SamplingParams
from martlet_engine_pt.serving import BatchingEngine
from martlet_sdk.tiny import tiny_model, tiny_tokenizer


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return tiny_model(attn_implementation="sdpa").eval()


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


@pytest.fixture
def engine(model, tokenizer):
    engine = BatchingEngine(model, tokenizer, max_batch_size=4)
    yield engine
    engine.shutdown(drain=False)


def prompts(*lengths, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(3, 200, (n,), generator=generator).tolist() for n in lengths]


def alone(model, prompt, n):
    """transformers' greedy generate for one prompt, no end-of-sequence."""
    with torch.no_grad():
        out = model.generate(
            input_ids=torch.tensor([prompt]),
            attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
            max_new_tokens=n,
            min_new_tokens=n,
            do_sample=False,
            pad_token_id=0,
        )
    return out[0, len(prompt) :].tolist()


def tokens(stream):
    steps = stream.result()
    return [t for s in steps for t in s.token_ids], steps[-1].finish_reason


def test_a_batch_gives_each_request_its_own_greedy_tokens(engine, model):
    """Six requests of different lengths through a batch of four: some wait for a slot and
    join between steps, each leaves when its own max_tokens is reached."""
    asked = prompts(5, 17, 9, 30, 3, 12)
    streams = [
        engine.submit(p, SamplingParams(max_tokens=8 + i, ignore_eos=True))
        for i, p in enumerate(asked)
    ]
    for i, (prompt, stream) in enumerate(zip(asked, streams, strict=True)):
        got, reason = tokens(stream)
        assert got == alone(model, prompt, 8 + i), i
        assert reason == "length"
    assert max(engine.batch_sizes) == 4  # they really were decoded together


def test_a_request_joining_mid_decode_changes_nothing_for_the_others(engine, model):
    first, second = prompts(7, 21, seed=1)
    early = engine.submit(first, SamplingParams(max_tokens=30, ignore_eos=True))
    steps = iter(early)
    seen = [next(steps).token_ids[0] for _ in range(5)]  # decoding has started
    late = engine.submit(second, SamplingParams(max_tokens=10, ignore_eos=True))
    seen += [t for s in steps for t in s.token_ids]
    assert seen == alone(model, first, 30)
    assert tokens(late)[0] == alone(model, second, 10)


def test_the_same_seed_samples_the_same_tokens_whatever_else_is_decoding(engine):
    prompt, *others = prompts(6, 11, 4, seed=2)
    params = SamplingParams(max_tokens=12, temperature=0.9, top_p=0.9, top_k=50, seed=7)
    params.ignore_eos = True
    solo = tokens(engine.submit(prompt, params))[0]
    busy = [engine.submit(p, SamplingParams(max_tokens=20, ignore_eos=True)) for p in others]
    again = tokens(engine.submit(prompt, params))[0]
    for stream in busy:
        stream.result()
    assert solo == again
    other = SamplingParams(max_tokens=12, temperature=0.9, seed=8, ignore_eos=True)
    assert tokens(engine.submit(prompt, other))[0] != solo


def test_a_strong_presence_penalty_never_repeats_a_token(engine):
    (prompt,) = prompts(5, seed=3)
    plain = tokens(engine.submit(prompt, SamplingParams(max_tokens=40, ignore_eos=True)))[0]
    assert len(set(plain)) < len(plain)  # the tiny model repeats itself when greedy
    params = SamplingParams(max_tokens=40, presence_penalty=2.0, ignore_eos=True)
    penalised = tokens(engine.submit(prompt, params))[0]
    assert len(set(penalised)) == len(penalised)


def test_logprobs_are_the_models_own(engine, model):
    (prompt,) = prompts(9, seed=4)
    stream = engine.submit(
        prompt, SamplingParams(max_tokens=4, logprobs=3, prompt_logprobs=2, ignore_eos=True)
    )
    steps = stream.result()
    first, rest = steps[0], steps[1:]
    assert first.token_ids == [] and len(first.prompt_logprobs) == len(prompt)
    assert first.prompt_logprobs[0] is None
    generated = [t for s in rest for t in s.token_ids]
    sequence = torch.tensor([prompt + generated])
    with torch.no_grad():
        expected = torch.log_softmax(model(sequence).logits[0].float(), dim=-1)
    for i, entry in enumerate(first.prompt_logprobs[1:], start=1):
        assert entry.token_id == prompt[i]
        assert entry.logprob == pytest.approx(float(expected[i - 1, prompt[i]]), abs=1e-4)
        assert len(entry.top) == 2
    for j, step in enumerate(rest):
        (entry,) = step.logprobs
        at = len(prompt) - 1 + j
        assert entry.logprob == pytest.approx(float(expected[at, generated[j]]), abs=1e-4)
        assert [t for t, _ in entry.top] == expected[at].topk(3).indices.tolist()
        assert entry.top[0][0] == generated[j]  # greedy: the most likely


def test_cancel_aborts_one_request_and_the_batch_goes_on(engine, model):
    doomed, kept = prompts(5, 8, seed=5)
    a = engine.submit(doomed, SamplingParams(max_tokens=500, ignore_eos=True))
    b = engine.submit(kept, SamplingParams(max_tokens=20, ignore_eos=True))
    steps = iter(a)
    next(steps)
    a.cancel()
    rest = list(steps)
    assert rest[-1].finish_reason == "abort"
    assert tokens(b)[0] == alone(model, kept, 20)


def test_the_queue_is_bounded(model, tokenizer):
    engine = BatchingEngine(model, tokenizer, max_batch_size=1, max_queued_requests=0)
    try:
        (prompt,) = prompts(4, seed=6)
        busy = engine.submit(prompt, SamplingParams(max_tokens=400, ignore_eos=True))
        next(iter(busy))  # it holds the only slot
        with pytest.raises(QueueFullError, match="already waiting"):
            engine.submit(prompt, SamplingParams(max_tokens=1))
        busy.cancel()
        busy.result()
    finally:
        engine.shutdown(drain=False)


class SlowToRetire(BatchingEngine):
    """A scheduler that takes its time to drop finished rows, as a busy one may."""

    def _retire(self) -> None:
        if any(r.done for r in self._running):
            time.sleep(0.5)
        super()._retire()


def test_a_finished_request_frees_its_slot_for_the_next_at_once(model, tokenizer):
    # a client reads its whole answer and asks again at once: the finished row may still be
    # in the batch, but its slot is free (CI once saw 429 here)
    engine = SlowToRetire(model, tokenizer, max_batch_size=1, max_queued_requests=0)
    try:
        (prompt,) = prompts(4, seed=7)
        for _ in range(3):
            answer, finish = tokens(engine.submit(prompt, SamplingParams(max_tokens=2)))
            assert len(answer) == 2 or finish == "stop"
    finally:
        engine.shutdown(drain=False)


def test_bad_requests_name_the_field(engine):
    with pytest.raises(BadRequestError) as bad:
        engine.submit([5, 6], SamplingParams(top_p=0))
    assert bad.value.param == "top_p"
    with pytest.raises(BadRequestError, match="no adapter called 'nope'"):
        engine.submit([5, 6], SamplingParams(), adapter="nope")
    with pytest.raises(BadRequestError, match="outside the vocabulary"):
        engine.submit([5, 10**9], SamplingParams())
    with pytest.raises(BadRequestError, match="at most"):
        engine.submit([5] * engine.max_model_len, SamplingParams())


def test_the_context_limit_ends_a_request_with_length(model, tokenizer):
    engine = BatchingEngine(model, tokenizer, max_model_len=12)
    try:
        got, reason = tokens(engine.submit([5] * 8, SamplingParams(max_tokens=50, ignore_eos=True)))
        assert reason == "length" and len(got) == 12 - 8
    finally:
        engine.shutdown()


def lora_folder(folder, seed):
    """A PEFT LoRA adapter of the tiny model that changes its answers, saved in ``folder``."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    lora = get_peft_model(tiny_model(attn_implementation="sdpa"), LoraConfig(r=4))
    with torch.no_grad():
        for p_name, p in lora.named_parameters():
            if "lora_B" in p_name:
                p.normal_(0, 0.5)
    lora.save_pretrained(folder)
    return str(folder)


def test_adapters_mix_in_one_batch(model, tokenizer, tmp_path):
    """Rows of one batch use different LoRA adapters (or none) and each gets what it gets
    with its adapter alone."""
    from martlet_engine_pt.serving import load_adapters

    folders = {
        name: lora_folder(tmp_path / name, seed) for name, seed in [("alpha", 1), ("beta", 2)]
    }
    base = tiny_model(attn_implementation="sdpa").eval()
    base.load_state_dict(model.state_dict())
    served = load_adapters(base, folders)
    engine = BatchingEngine(served, tokenizer, max_batch_size=3)
    try:
        assert engine.adapters() == ["alpha", "beta"]
        (prompt,) = prompts(6, seed=7)
        params = SamplingParams(max_tokens=10, ignore_eos=True)
        together = [engine.submit(prompt, params, adapter=a) for a in (None, "alpha", "beta")]
        mixed = [tokens(s)[0] for s in together]
        one_by_one = [
            tokens(engine.submit(prompt, params, adapter=a))[0] for a in (None, "alpha", "beta")
        ]
        assert mixed == one_by_one
        assert mixed[0] == alone(model, prompt, 10)
        assert len({tuple(m) for m in mixed}) == 3  # the adapters really change the answer
    finally:
        engine.shutdown()


def test_shutdown_drains_what_was_accepted(model, tokenizer):
    engine = BatchingEngine(model, tokenizer, max_batch_size=2)
    streams = [
        engine.submit(p, SamplingParams(max_tokens=15, ignore_eos=True)) for p in prompts(4, 6, 8)
    ]
    stopper = threading.Thread(target=engine.shutdown)
    stopper.start()
    results = [tokens(s) for s in streams]
    stopper.join(timeout=60)
    assert all(len(got) == 15 and reason == "length" for got, reason in results)
    with pytest.raises(Exception, match="shutting down"):
        engine.submit([5], SamplingParams())


def test_streams_can_be_consumed_asynchronously(engine, model):
    import asyncio

    (prompt,) = prompts(5, seed=8)

    async def consume():
        stream = engine.submit(prompt, SamplingParams(max_tokens=6, ignore_eos=True))
        started = time.perf_counter()
        got = [t async for step in stream for t in step.token_ids]
        return got, time.perf_counter() - started

    got, _ = asyncio.run(consume())
    assert got == alone(model, prompt, 6)


def test_a_vanishing_temperature_is_greedy_and_fails_no_one(engine, model):
    (prompt,) = prompts(5, seed=9)
    params = SamplingParams(max_tokens=6, temperature=8e-306, ignore_eos=True)
    assert tokens(engine.submit(prompt, params))[0] == alone(model, prompt, 6)


def test_a_run_directory_is_served_as_what_it_trained(model, tokenizer, tmp_path):
    """``serving(RUN_DIR)``: requests naming no adapter get the run's trained adapter (found
    broken: they decoded the bare base model), named adapters beside it get theirs, and the
    model loads off the main thread (see ``_off_the_main_thread``)."""
    import martlet.api
    import yaml
    from peft import PeftModel

    base_dir = tmp_path / "base"
    model.save_pretrained(base_dir)
    tokenizer.save_pretrained(base_dir)
    run = tmp_path / "run"
    lora_folder(run, seed=1)
    (run / "config.yaml").write_text(yaml.safe_dump({"model": str(base_dir), "tuner": "lora"}))
    other = lora_folder(tmp_path / "other", seed=2)
    (prompt,) = prompts(6, seed=9)

    def expected(folder):
        base = tiny_model(attn_implementation="sdpa").eval()
        base.load_state_dict(model.state_dict())
        return alone(PeftModel.from_pretrained(base, folder).eval(), prompt, 8)

    loading_threads = []
    real_load = martlet.api.load_model

    def load_model(*args, **kwargs):
        loading_threads.append(threading.current_thread())
        return real_load(*args, **kwargs)

    params = SamplingParams(max_tokens=8, ignore_eos=True)
    for extra in ({}, {"other": other}):
        martlet.api.load_model = load_model
        try:
            engine = BatchingEngine.serving(str(run), adapters=extra, torch_dtype="float32")
        finally:
            martlet.api.load_model = real_load
        try:
            assert engine.adapters() == sorted(extra)
            assert tokens(engine.submit(prompt, params))[0] == expected(str(run))
            if extra:
                got = tokens(engine.submit(prompt, params, adapter="other"))[0]
                assert got == expected(other) != expected(str(run))
        finally:
            engine.shutdown()
    assert loading_threads and threading.main_thread() not in loading_threads


def test_compiled_decoding_gives_the_same_tokens(model, tokenizer):
    """``compile=True`` (``--compile``): the decoding step compiled by inductor gives what
    the eager model gives, for one row and for a batch whose rows join and leave."""
    engine = BatchingEngine(model, tokenizer, max_batch_size=3, compile=True)
    try:
        params = SamplingParams(max_tokens=6, ignore_eos=True)
        (one,) = prompts(5, seed=11)
        assert tokens(engine.submit(one, params))[0] == alone(model, one, 6)
        batch = prompts(3, 7, 4, seed=12)
        streams = [engine.submit(p, params) for p in batch]
        assert [tokens(s)[0] for s in streams] == [alone(model, p, 6) for p in batch]
    finally:
        engine.shutdown()


def test_compile_refuses_adapters(model, tokenizer, tmp_path):
    from martlet.errors import ConfigError
    from martlet_engine_pt.serving import load_adapters

    base = tiny_model(attn_implementation="sdpa").eval()
    served = load_adapters(base, {"alpha": lora_folder(tmp_path / "alpha", 1)})
    with pytest.raises(ConfigError, match="--compile serves a model without adapters"):
        BatchingEngine(served, tokenizer, compile=True)
