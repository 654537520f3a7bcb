"""What passes between a server and a serving engine (:class:`martlet.interfaces.ServingEngine`).

A server (``martlet deploy``) renders a request into prompt token ids and
:class:`SamplingParams`, and submits them to the engine of the ``--infer-backend`` record; the
engine answers with a :class:`Stream` of :class:`Step` objects — the new token ids of each
decoding step, their log-probabilities where asked, and why the request ended. Text, stop
strings and the wire format are the server's: every backend is driven the same way, and an
engine needs to know nothing of HTTP or of the OpenAI schema.

Nothing heavy is imported here (no torch): a backend plugin imports this module at will.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from martlet.errors import ConfigError, MartletError

#: why a request ended: an end-of-sequence or stop token (or a stop string, which the server
#: finds), ``max_tokens`` reached, or cancelled (client gone, server stopping)
FINISH_REASONS = ("stop", "length", "abort")


@dataclass(kw_only=True)
class SamplingParams:
    """How one request is decoded. The defaults are greedy decoding of up to 16 tokens.

    ``temperature`` 0 is greedy; ``top_k`` 0 is off; ``seed`` fixes the request's own random
    stream (the same seed, prompt and settings give the same tokens, whatever else the engine
    is decoding at the time). ``presence_penalty`` and ``frequency_penalty`` are OpenAI's
    (subtracted from the logits of tokens already generated: once, and per occurrence);
    ``repetition_penalty`` is the multiplicative one of transformers (1: off). ``logprobs``:
    None for none, ``k`` for the chosen token's log-probability and the ``k`` most likely
    alternatives at each step; ``prompt_logprobs`` the same for the prompt's tokens (the first
    has none). ``stop_token_ids`` end a request like the end-of-sequence token;
    ``ignore_eos`` keeps decoding past it.
    """

    max_tokens: int = 16
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False
    logprobs: int | None = None
    prompt_logprobs: int | None = None

    def check(self) -> None:
        """Raises :class:`~martlet.errors.ConfigError` naming the first bad value."""
        rules = [
            (self.max_tokens >= 1, "max_tokens", self.max_tokens, "at least 1"),
            (self.temperature >= 0, "temperature", self.temperature, "0 (greedy) or more"),
            (0 < self.top_p <= 1, "top_p", self.top_p, "in (0, 1]"),
            (self.top_k >= 0, "top_k", self.top_k, "0 (off) or more"),
            (-2 <= self.presence_penalty <= 2, "presence_penalty", self.presence_penalty,
             "between -2 and 2"),
            (-2 <= self.frequency_penalty <= 2, "frequency_penalty", self.frequency_penalty,
             "between -2 and 2"),
            (self.repetition_penalty > 0, "repetition_penalty", self.repetition_penalty,
             "positive"),
            (self.logprobs is None or self.logprobs >= 0, "logprobs", self.logprobs,
             "0 or more"),
            (self.prompt_logprobs is None or self.prompt_logprobs >= 0, "prompt_logprobs",
             self.prompt_logprobs, "0 or more"),
        ]  # fmt: skip
        for ok, name, value, rule in rules:
            if not ok:
                raise BadRequestError(f"{name} must be {rule}, got {value!r}", param=name)


@dataclass
class TokenLogprob:
    """A token's log-probability and, where asked, the most likely tokens at its position
    (``top``: ``(token_id, logprob)`` pairs, most likely first)."""

    token_id: int
    logprob: float
    top: list[tuple[int, float]] = field(default_factory=list)


@dataclass
class Step:
    """What an engine emits for a request: new tokens (usually one per decoding step), their
    log-probabilities where asked, and — on the last step — why it ended. The first step of
    a request that asked for ``prompt_logprobs`` carries them (one entry per prompt token,
    None for the first)."""

    token_ids: list[int]
    logprobs: list[TokenLogprob] | None = None
    finish_reason: str | None = None
    prompt_logprobs: list[TokenLogprob | None] | None = None


class BadRequestError(ConfigError):
    """A request the engine cannot decode as asked (HTTP 400); ``param`` names the field."""

    def __init__(self, what: str, *, param: str | None = None, **kwargs: Any) -> None:
        super().__init__(what, **kwargs)
        self.param = param


class QueueFullError(MartletError):
    """The engine's queue of waiting requests is full: try again later (HTTP 429)."""


class EngineStoppedError(MartletError):
    """The engine is shutting down, or has stopped: it takes no new request (HTTP 503)."""

    def __init__(self, message: str = "the engine is shutting down", **details: Any) -> None:
        details.setdefault("fix", "send the request to another server")
        super().__init__(message, **details)


class Stream:
    """The steps of one request, from the engine's thread to a consumer.

    The engine calls :meth:`put` for each :class:`Step` and :meth:`close` once (with the
    exception when it failed); the consumer iterates — blocking (``for step in stream``) or
    asynchronously (``async for step in stream``) — and may :meth:`cancel`, which the engine
    sees in :attr:`cancelled` and answers by closing the stream with a last ``abort`` step.
    Thread-safe; one consumer.
    """

    def __init__(self, request_id: str = "") -> None:
        self.request_id = request_id
        self._items: collections.deque[Step] = collections.deque()
        self._lock = threading.Condition()
        self._closed = False
        self._error: BaseException | None = None
        self._cancelled = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None

    # ------------------------------------------------------------ engine side

    @property
    def cancelled(self) -> bool:
        """Whether the consumer gave up on the request."""
        return self._cancelled.is_set()

    def put(self, step: Step) -> None:
        """Hand a step to the consumer."""
        with self._lock:
            if self._closed:
                return
            self._items.append(step)
            self._lock.notify_all()
        self._notify()

    def close(self, error: BaseException | None = None) -> None:
        """No more steps; ``error``, if given, is raised in the consumer after the steps."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._error = error
            self._lock.notify_all()
        self._notify()

    @property
    def closed(self) -> bool:
        return self._closed

    def _notify(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            try:
                loop.call_soon_threadsafe(wake.set)
            except RuntimeError:  # the loop has closed: nobody is listening any more
                pass

    # ---------------------------------------------------------- consumer side

    def cancel(self) -> None:
        """Stop the request: the engine frees its slot at its next step."""
        self._cancelled.set()

    def __iter__(self) -> Iterator[Step]:
        while True:
            with self._lock:
                while not self._items and not self._closed:
                    self._lock.wait()
                if self._items:
                    step = self._items.popleft()
                else:
                    if self._error is not None:
                        raise self._error
                    return
            yield step

    async def __aiter__(self) -> AsyncIterator[Step]:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        while True:
            with self._lock:
                step = self._items.popleft() if self._items else None
                done = step is None and self._closed
                error = self._error
                if step is None and not done:
                    self._wake.clear()
            if step is not None:
                yield step
                continue
            if done:
                if error is not None:
                    raise error
                return
            await self._wake.wait()

    def result(self) -> list[Step]:
        """Every step, blocking until the request ends."""
        return list(self)


def checked_prompt(
    prompt_ids: Sequence[int],
    params: SamplingParams,
    *,
    vocab_size: int,
    max_model_len: int,
    adapter: str | None = None,
    adapters: Sequence[str] = (),
) -> list[int]:
    """What every serving engine checks before it accepts a request: ``params``, a prompt of
    token ids inside the vocabulary and shorter than ``max_model_len``, an adapter it serves.
    Returns the prompt as a list of ints.

    Raises:
        BadRequestError: the first thing wrong, naming the request field.
    """
    params.check()
    prompt = [int(t) for t in prompt_ids]
    if not prompt:
        raise BadRequestError("the prompt has no tokens", param="prompt")
    if any(t < 0 or t >= vocab_size for t in prompt):
        raise BadRequestError(
            f"the prompt holds token ids outside the vocabulary (0 to {vocab_size - 1})",
            param="prompt",
        )
    if len(prompt) >= max_model_len:
        raise BadRequestError(
            f"the prompt is {len(prompt)} tokens; this model takes at most "
            f"{max_model_len} tokens, prompt and answer together",
            param="messages",
            fix="shorten the prompt",
        )
    if adapter is not None and adapter not in adapters:
        known = ", ".join(adapters) or "none"
        raise BadRequestError(f"no adapter called {adapter!r} (served: {known})", param="model")
    return prompt


def collect(steps: list[Step]) -> tuple[list[int], str | None]:
    """The token ids of ``steps`` and the finish reason of the last."""
    ids = [t for s in steps for t in s.token_ids]
    return ids, (steps[-1].finish_reason if steps else None)


def describe(params: SamplingParams) -> dict[str, Any]:
    """``params`` as a plain dict (for logs and tests)."""
    from dataclasses import asdict

    return asdict(params)
