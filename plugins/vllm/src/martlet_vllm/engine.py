"""The vllm backend's serving engine: vLLM's ``LLMEngine`` stepped by one thread.

Requests arrive from any thread (:meth:`VllmEngine.submit` checks them and queues them); the
engine's thread hands them to vLLM between two ``step()`` calls, turns each step's
``RequestOutput`` deltas into :class:`~martlet.generation.Step` objects on the requests'
streams, and aborts in vLLM what a consumer cancelled. vLLM does the batching (continuous,
paged KV cache) and, in its default multiprocess mode, runs the model in its own process.
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from martlet.errors import MartletError
from martlet.generation import (
    BadRequestError,
    EngineStoppedError,
    QueueFullError,
    SamplingParams,
    Step,
    Stream,
    checked_prompt,
)

from martlet_vllm.params import to_step, to_vllm

log = logging.getLogger("martlet.vllm")


@dataclass(eq=False)
class _Request:
    key: str  # vLLM's request id: unique, unlike the caller's
    prompt: list[int]
    params: SamplingParams
    vllm_params: Any
    lora: Any
    stream: Stream
    started: bool = False


class VllmEngine:
    """A :class:`martlet.interfaces.ServingEngine` over a vLLM ``LLMEngine`` (build one with
    :meth:`serving`).

    Args:
        engine: the started ``vllm.v1.engine.llm_engine.LLMEngine``.
        loras: adapter name -> ``LoRARequest``; ``None`` -> the one a LoRA run serves by default.
        max_queued_requests: requests waiting beyond ``max_batch_size`` running ones; more are
            refused with :class:`~martlet.generation.QueueFullError`.
        max_logprobs: the most ``logprobs``/``prompt_logprobs`` a request may ask for.
    """

    def __init__(
        self,
        engine: Any,
        *,
        loras: Mapping[str | None, Any] | None = None,
        max_batch_size: int = 256,
        max_queued_requests: int = 256,
        max_logprobs: int = 20,
    ) -> None:
        self._engine = engine
        self.tokenizer = engine.get_tokenizer()
        model_config = engine.vllm_config.model_config
        self.max_model_len = int(model_config.max_model_len)
        self.vocab_size = int(model_config.get_vocab_size())
        self._loras = dict(loras or {})
        self._limit = max_batch_size + max_queued_requests
        self._max_logprobs = max_logprobs
        self._inbox: collections.deque[_Request] = collections.deque()
        self._live: dict[str, _Request] = {}
        self._cv = threading.Condition()
        self._accepting = True
        self._stopping = False
        self._keys = itertools.count()
        self._thread = threading.Thread(target=self._loop, name="martlet-vllm", daemon=True)
        self._thread.start()

    @classmethod
    def serving(cls, model: str, **options: Any) -> VllmEngine:
        """Start vLLM on ``model`` (a model id or folder, a GGUF file, or a training run
        directory: a LoRA run serves its base with the adapter on; a full run its weights)
        with ``adapters`` (name -> PEFT LoRA folder) — see
        :class:`martlet.interfaces.ServingEngine` for the keywords, and
        :class:`martlet_vllm.options.VllmOptions` for the backend's own.

        Raises:
            MissingDependencyError: vLLM is not installed (the message says which package).
            MartletError: vLLM failed to start (its reason attached).
        """
        from martlet_vllm.launch import start

        return start(cls, model, **options)

    # ------------------------------------------------------------------ the interface

    def adapters(self) -> list[str]:
        return sorted(name for name in self._loras if name is not None)

    def submit(
        self,
        prompt_ids: Sequence[int],
        params: SamplingParams,
        *,
        adapter: str | None = None,
        request_id: str = "",
    ) -> Stream:
        prompt = self._checked(prompt_ids, params, adapter)
        try:
            vllm_params = to_vllm(params)
        except ValueError as exc:  # vLLM's own checks, beyond Martlet's
            raise BadRequestError(f"vLLM refuses the request: {exc}") from exc
        key = str(next(self._keys))
        stream = Stream(request_id or f"req-{key}")
        request = _Request(key, prompt, params, vllm_params, self._loras.get(adapter), stream)
        with self._cv:
            if not self._accepting:
                raise EngineStoppedError()
            if len(self._inbox) + len(self._live) >= self._limit:
                raise QueueFullError(
                    f"{len(self._inbox) + len(self._live)} requests are already queued or running",
                    fix="retry shortly, or raise --max-queued-requests",
                )
            self._inbox.append(request)
            self._cv.notify_all()
        return stream

    def shutdown(self, drain: bool = True) -> None:
        with self._cv:
            self._accepting = False
            if not drain:
                for request in [*self._inbox, *self._live.values()]:
                    request.stream.cancel()
            self._stopping = True
            self._cv.notify_all()
        self._thread.join()

    # ------------------------------------------------------------------ checks

    def _checked(
        self, prompt_ids: Sequence[int], params: SamplingParams, adapter: str | None
    ) -> list[int]:
        params.check()
        for name in ("logprobs", "prompt_logprobs"):
            asked = getattr(params, name)
            if asked is not None and asked > self._max_logprobs:
                raise BadRequestError(
                    f"{name} must be at most {self._max_logprobs}, got {asked}",
                    param=name,
                    fix="ask for fewer, or start the server with a larger --max-logprobs",
                )
        return checked_prompt(
            prompt_ids,
            params,
            vocab_size=self.vocab_size,
            max_model_len=self.max_model_len,
            adapter=adapter,
            adapters=self.adapters(),
        )

    # ------------------------------------------------------------------ the engine's thread

    def _loop(self) -> None:
        try:
            while self._turn():
                pass
        finally:
            _stop_vllm(self._engine)

    def _turn(self) -> bool:
        """Admit, cancel, step once; False when the engine is done."""
        with self._cv:
            while not self._inbox and not self._live and not self._stopping:
                self._cv.wait()
            if self._stopping and not self._inbox and not self._live:
                return False
            arrived = list(self._inbox)
            self._inbox.clear()
        try:
            for request in arrived:
                self._admit(request)
            self._abort_cancelled()
            if self._live:
                for output in self._engine.step():
                    self._deliver(output)
        except Exception as exc:  # noqa: BLE001 - every request in flight gets it
            log.exception("vLLM failed")
            self._fail_all(exc)
        return True

    def _admit(self, request: _Request) -> None:
        if request.stream.cancelled:
            _end(request.stream, Step([], finish_reason="abort"))
            return
        try:
            self._engine.add_request(
                request.key, _tokens(request.prompt), request.vllm_params, lora_request=request.lora
            )
        except ValueError as exc:  # vLLM refused this request alone
            request.stream.close(BadRequestError(f"vLLM refuses the request: {exc}"))
            return
        self._live[request.key] = request

    def _abort_cancelled(self) -> None:
        cancelled = [key for key, r in self._live.items() if r.stream.cancelled]
        if not cancelled:
            return
        self._engine.abort_request(cancelled)
        for key in cancelled:
            _end(self._live.pop(key).stream, Step([], finish_reason="abort"))

    def _deliver(self, output: Any) -> None:
        request = self._live.get(output.request_id)
        if request is None:  # aborted meanwhile
            return
        step = to_step(output, request.params, first=not request.started)
        request.started = True
        request.stream.put(step)
        if step.finish_reason is not None or output.finished:
            del self._live[request.key]
            request.stream.close()

    def _fail_all(self, exc: Exception) -> None:
        error = (
            exc
            if isinstance(exc, MartletError)
            else MartletError("generation failed", why=f"{type(exc).__name__}: {exc}", cause=exc)
        )
        live, self._live = list(self._live.values()), {}
        for request in live:
            request.stream.close(error)
        if live:
            try:
                self._engine.abort_request([r.key for r in live])
            except Exception:  # noqa: BLE001 - the engine is already broken
                log.debug("abort after a failure failed", exc_info=True)


def _end(stream: Stream, step: Step) -> None:
    stream.put(step)
    stream.close()


def _tokens(prompt: list[int]) -> Any:
    """vLLM's input for a tokenized prompt (``tokens_input`` since 0.2x; ``TokensPrompt``
    before)."""
    try:
        from vllm.inputs.engine import tokens_input
    except ImportError:
        from vllm.inputs import TokensPrompt

        return TokensPrompt(prompt_token_ids=prompt)
    return tokens_input(prompt)


def _stop_vllm(engine: Any) -> None:
    """Stop vLLM's engine core (its process, in multiprocess mode) now, not at exit."""
    core = getattr(engine, "engine_core", None)
    stop = getattr(core, "shutdown", None)
    if stop is not None:
        try:
            stop()
        except Exception:  # noqa: BLE001 - stopping: nothing is waiting on it
            log.debug("vLLM's shutdown failed", exc_info=True)
