"""The contract of a serving backend: an inference backend record claiming ``serve`` whose
implementation's ``serving(model, ...)`` returns a :class:`martlet.interfaces.ServingEngine`.

Subclass :class:`ServingContract` with the ``plugin`` and ``record_name`` fixtures; the checks
then start the real engine (once per class and model) on ``serving_model`` — by default the
SDK's tiny Llama, saved by :func:`serving_model_dir` — and drive it as ``martlet deploy``
does: prompt token ids and :class:`~martlet.generation.SamplingParams` in, a
:class:`~martlet.generation.Stream` of steps out. Override ``serving_model`` (a folder or model
id), ``serving_options`` (the keywords ``serving()`` gets) and ``serving_plugins`` (the plugins
the engine needs beside yours to load the model; default ``("hf", "accel")``) where your engine
needs something else.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from martlet.generation import BadRequestError, EngineStoppedError, SamplingParams, Step, collect

from martlet_sdk.contracts.base import RecordContract

#: the prompts of the checks (encoded with the engine's tokenizer)
PROMPTS = (
    "What is the capital of France?",
    "Two plus two is",
    "Write a short poem about the sea.",
    "Hello",
)


def serving_model_dir(path: str | Path, seed: int = 0, **config_overrides: Any) -> Path:
    """The SDK's tiny model (``config_overrides`` applied) saved at ``path``, with its
    end-of-sequence token chosen among the first tokens it answers :data:`PROMPTS` ``[0]``
    with greedily: a random model otherwise rarely ends an answer, and the contract checks
    what an engine does when it does (the token included, ``stop``; ``ignore_eos``)."""
    import torch

    from martlet_sdk.tiny import tiny_model, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    model = tiny_model(seed=seed, tokenizer=tokenizer, **config_overrides)
    ids = torch.tensor([tokenizer(PROMPTS[0])["input_ids"]])
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=4, do_sample=False, eos_token_id=None)
    answer = out[0, ids.shape[1] :].tolist()
    # the first token that was not the answer's first: the answer ends after a token or two
    eos = next((t for t in answer[1:] if t != answer[0]), answer[0])
    tokenizer.eos_token = tokenizer.convert_ids_to_tokens(eos)
    model.config.eos_token_id = eos
    model.generation_config.eos_token_id = eos
    path = Path(path)
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


def run(engine: Any, prompt: list[int], **params: Any) -> tuple[list[int], str | None]:
    """The token ids and finish reason of one request."""
    return collect(engine.submit(prompt, SamplingParams(**params)).result())


class ServingContract(RecordContract):
    """A serving backend: registration checks, then the engine's behaviour — deterministic
    greedy decoding that batching does not change, ``max_tokens``, end-of-sequence and stop
    tokens, ``ignore_eos``, seeded sampling, log-probabilities of answers and prompts,
    cancelling, the requests it must refuse, and a shutdown that drains."""

    kind = "inference_backends"
    interface = {"serving": "serve"}
    #: seconds a cancelled request may take to end
    cancel_within = 10.0

    # ------------------------------------------------------------ fixtures to override

    @pytest.fixture
    def serving_model(self, tmp_path_factory: pytest.TempPathFactory) -> Path:
        return _default_model(tmp_path_factory)

    @pytest.fixture
    def serving_options(self) -> dict[str, Any]:
        return {"max_model_len": 256, "max_batch_size": 8}

    @pytest.fixture
    def serving_plugins(self) -> tuple[str, ...]:
        return ("hf", "accel")

    # ------------------------------------------------------------ provided fixtures

    @pytest.fixture(scope="class")
    @classmethod
    def _serving_engines(cls) -> Iterator[dict[Any, Any]]:
        engines: dict[Any, Any] = {}
        yield engines
        for engine in engines.values():
            engine.shutdown(drain=False)

    @pytest.fixture
    def start_engine(
        self,
        record: Any,
        impl: Any,
        plugin: Any,
        serving_model: Any,
        serving_options: dict[str, Any],
        serving_plugins: tuple[str, ...],
    ) -> Any:
        """A function that starts a new engine (the caller shuts it down)."""
        if "serve" not in record.capabilities:
            pytest.skip(f"{record.label} {record.name!r} does not claim 'serve'")

        def start() -> Any:
            from martlet_sdk.isolation import activated, isolated_manager

            with activated(isolated_manager(plugin, *serving_plugins)):
                return impl.serving(str(serving_model), **serving_options)

        return start

    @pytest.fixture
    def engine(
        self, _serving_engines: dict[Any, Any], start_engine: Any, serving_model: Any
    ) -> Any:
        """The engine under test, started once per class and model."""
        key = str(serving_model)
        if key not in _serving_engines:
            _serving_engines[key] = start_engine()
        return _serving_engines[key]

    @pytest.fixture
    def prompts(self, engine: Any) -> list[list[int]]:
        return [engine.tokenizer(p)["input_ids"] for p in PROMPTS]

    # ------------------------------------------------------------ registration

    def test_record_claims_serve_and_has_serving(self, record: Any, impl: Any) -> None:
        assert "serve" in record.capabilities, "a serving backend claims the 'serve' capability"
        assert callable(getattr(impl, "serving", None)), f"{record.impl} lacks serving()"

    def test_engine_has_the_interface(self, engine: Any) -> None:
        assert engine.tokenizer is not None and callable(engine.tokenizer)
        assert isinstance(engine.max_model_len, int) and engine.max_model_len > 0
        assert isinstance(engine.adapters(), list)
        assert callable(engine.submit) and callable(engine.shutdown)

    # ------------------------------------------------------------ decoding

    def test_submit_returns_at_once_and_streams_step_by_step(self, engine, prompts) -> None:
        stream = engine.submit(prompts[0], SamplingParams(max_tokens=6, ignore_eos=True))
        steps = stream.result()
        assert all(isinstance(s, Step) for s in steps)
        assert len([s for s in steps if s.token_ids]) >= 2, "tokens arrive as they are made"
        assert [s.finish_reason for s in steps[:-1]] == [None] * (len(steps) - 1)

    def test_greedy_decoding_is_deterministic(self, engine, prompts) -> None:
        first = run(engine, prompts[0], max_tokens=12, ignore_eos=True)
        assert first == run(engine, prompts[0], max_tokens=12, ignore_eos=True)

    def test_concurrent_greedy_requests_match_one_at_a_time(self, engine, prompts) -> None:
        alone = [run(engine, p, max_tokens=12, ignore_eos=True) for p in prompts]
        params = SamplingParams(max_tokens=12, ignore_eos=True)
        streams = [engine.submit(p, params) for p in prompts]
        together = [collect(s.result()) for s in streams]
        assert together == alone

    def test_max_tokens_ends_with_length(self, engine, prompts) -> None:
        for n in (1, 5):
            ids, finish = run(engine, prompts[1], max_tokens=n, ignore_eos=True)
            assert (len(ids), finish) == (n, "length")

    def test_the_end_of_sequence_token_ends_with_stop_unless_ignored(self, engine, prompts):
        ids, finish = run(engine, prompts[0], max_tokens=24)
        if finish != "stop":
            pytest.skip(
                "the model did not end its greedy answer with its end-of-sequence token "
                f"within 24 tokens ({ids}); serving_model_dir() builds one that does"
            )
        assert ids[-1] == engine.tokenizer.eos_token_id, "the EOS token ends the answer"
        assert ids.count(ids[-1]) == 1, "the answer ends at its first end-of-sequence token"
        longer, why = run(engine, prompts[0], max_tokens=len(ids) + 4, ignore_eos=True)
        assert (longer[: len(ids)], len(longer), why) == (ids, len(ids) + 4, "length")

    def test_a_stop_token_ends_the_answer_and_is_included(self, engine, prompts) -> None:
        ids, _ = run(engine, prompts[2], max_tokens=8, ignore_eos=True)
        stop = ids[2]
        cut, finish = run(engine, prompts[2], max_tokens=8, ignore_eos=True, stop_token_ids=(stop,))
        assert (cut, finish) == (ids[: ids.index(stop) + 1], "stop")

    def test_a_seed_makes_sampling_reproducible(self, engine, prompts) -> None:
        sampled = dict(max_tokens=10, temperature=1.0, ignore_eos=True)
        a = run(engine, prompts[0], seed=7, **sampled)
        assert a == run(engine, prompts[0], seed=7, **sampled)
        others = {tuple(run(engine, prompts[0], seed=s, **sampled)[0]) for s in range(8, 13)}
        assert len(others | {tuple(a[0])}) > 1, "different seeds sample differently"
        # and whatever else the engine decodes meanwhile
        busy = engine.submit(prompts[3], SamplingParams(max_tokens=10, ignore_eos=True))
        assert run(engine, prompts[0], seed=7, **sampled) == a
        busy.result()

    # ------------------------------------------------------------ log-probabilities

    def test_logprobs_of_each_token_with_sorted_top_alternatives(self, engine, prompts) -> None:
        steps = engine.submit(
            prompts[0], SamplingParams(max_tokens=5, ignore_eos=True, logprobs=3)
        ).result()
        entries = [(t, lp) for s in steps if s.token_ids for t, lp in _zip_logprobs(s)]
        assert len(entries) == 5
        for token, lp in entries:
            assert lp.token_id == token and lp.logprob <= 0
            assert len(lp.top) == 3, "k alternatives"
            values = [v for _, v in lp.top]
            assert values == sorted(values, reverse=True), "most likely first"
            assert all(v <= 0 for v in values)
            # greedy: the chosen token is the most likely one
            assert abs(values[0] - lp.logprob) < 1e-3
        none = engine.submit(prompts[0], SamplingParams(max_tokens=2, logprobs=0)).result()
        assert all(lp.top == [] for s in none if s.token_ids for _, lp in _zip_logprobs(s))
        plain = engine.submit(prompts[0], SamplingParams(max_tokens=2)).result()
        assert all(s.logprobs is None for s in plain)

    def test_prompt_logprobs_cover_the_prompt(self, engine, prompts) -> None:
        """(An engine whose library has none refuses them: a BadRequestError naming
        ``prompt_logprobs``, and this check skips.)"""
        prompt = prompts[0]
        try:
            stream = engine.submit(prompt, SamplingParams(max_tokens=2, prompt_logprobs=2))
        except BadRequestError as refused:
            if refused.param != "prompt_logprobs":
                raise
            pytest.skip(f"the engine declines prompt log-probabilities: {refused}")
        steps = stream.result()
        carried = [s.prompt_logprobs for s in steps if s.prompt_logprobs is not None]
        assert len(carried) == 1 and steps[0].prompt_logprobs is not None, "on the first step"
        entries = carried[0]
        assert len(entries) == len(prompt) and entries[0] is None
        for token, lp in zip(prompt[1:], entries[1:], strict=True):
            assert lp.token_id == token and lp.logprob <= 0 and len(lp.top) == 2
            assert lp.top[0][1] >= lp.top[1][1]

    # ------------------------------------------------------------ cancel and refusals

    def test_cancel_ends_with_abort_quickly(self, engine, prompts) -> None:
        longest = engine.max_model_len - len(prompts[0]) - 1
        stream = engine.submit(prompts[0], SamplingParams(max_tokens=longest, ignore_eos=True))
        iterator = iter(stream)
        first = next(iterator)
        assert first.finish_reason is None
        stream.cancel()
        start = time.monotonic()
        rest = list(iterator)
        assert time.monotonic() - start < self.cancel_within
        assert rest and rest[-1].finish_reason == "abort"
        assert len([t for s in [first, *rest] for t in s.token_ids]) < longest

    @pytest.mark.parametrize(
        ("field", "value"),
        [("temperature", -1.0), ("top_p", 0.0), ("max_tokens", 0), ("top_k", -2),
         ("logprobs", -1), ("presence_penalty", 3.0), ("repetition_penalty", 0.0)],
    )  # fmt: skip
    def test_bad_params_are_refused_naming_the_field(self, engine, prompts, field, value):
        with pytest.raises(BadRequestError) as refused:
            engine.submit(prompts[0], SamplingParams(**{field: value}))
        assert refused.value.param == field

    def test_an_unknown_adapter_is_refused(self, engine, prompts) -> None:
        with pytest.raises(BadRequestError):
            engine.submit(prompts[0], SamplingParams(), adapter="no-such-adapter")

    def test_a_prompt_too_long_or_empty_is_refused(self, engine, prompts) -> None:
        too_long = (prompts[0] * engine.max_model_len)[: engine.max_model_len]
        with pytest.raises(BadRequestError):
            engine.submit(too_long, SamplingParams(max_tokens=1))
        with pytest.raises(BadRequestError):
            engine.submit([], SamplingParams(max_tokens=1))

    def test_shutdown_drains_accepted_work_then_refuses(self, start_engine, serving_model):
        engine = start_engine()
        try:
            prompts = [engine.tokenizer(p)["input_ids"] for p in PROMPTS]
            params = SamplingParams(max_tokens=6, ignore_eos=True)
            streams = [engine.submit(p, params) for p in prompts]
            done = threading.Event()
            threading.Thread(target=lambda: (engine.shutdown(drain=True), done.set())).start()
            assert done.wait(120), "shutdown(drain=True) returns once the work is done"
            for stream in streams:
                ids, finish = collect(stream.result())
                assert (len(ids), finish) == (6, "length")
            with pytest.raises(EngineStoppedError):  # the server answers 503
                engine.submit(prompts[0], params)
        finally:
            engine.shutdown(drain=False)


def _zip_logprobs(step: Step) -> list[tuple[int, Any]]:
    assert step.logprobs is not None, "logprobs were asked for"
    assert len(step.logprobs) == len(step.token_ids), "one entry per token"
    return list(zip(step.token_ids, step.logprobs, strict=True))


_MODELS: dict[str, Path] = {}


def _default_model(factory: pytest.TempPathFactory) -> Path:
    """The default ``serving_model``: built once per process."""
    if "tiny" not in _MODELS:
        _MODELS["tiny"] = serving_model_dir(factory.mktemp("serving-model"))
    return _MODELS["tiny"]
