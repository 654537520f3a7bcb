"""The sglang backend's serving engine: ``sglang.Engine`` driven from an asyncio loop thread.

``sglang.Engine`` runs its scheduler and detokenizer in their own processes and answers
``async_generate(..., stream=True)`` with a stream of chunks on the event loop that created it.
:class:`SglangEngine` builds it on a loop of its own thread, runs one coroutine per request
there, and turns each chunk's new tokens into a :class:`~martlet.generation.Step`. The end of a
request is decided here, token by token (the model's end-of-sequence tokens unless
``ignore_eos``, and ``stop_token_ids``), so that the ending token is part of the answer as the
contract says whatever SGLang's own trimming; SGLang is told to ignore both and is aborted
once the answer ends.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from martlet.errors import MartletError
from martlet.generation import EngineStoppedError, QueueFullError, SamplingParams, Step, Stream

from martlet_sglang.request import check_request, new_tokens, prompt_logprobs, to_sglang

log = logging.getLogger("martlet.sglang")


class SglangEngine:
    """A :class:`martlet.interfaces.ServingEngine` over ``sglang.Engine`` (build one with
    :meth:`serving`). ``build`` makes the SGLang engine; it runs on the engine's own thread."""

    def __init__(
        self,
        build: Callable[[], Any],
        tokenizer: Any,
        *,
        max_model_len: int,
        adapters: Mapping[str, str] | None = None,
        eos_ids: Sequence[int] = (),
        max_requests: int = 512,
    ) -> None:
        self.tokenizer = tokenizer
        self.max_model_len = int(max_model_len)
        self.vocab_size = len(tokenizer)
        self._adapters = dict(adapters or {})
        self._eos = frozenset(int(t) for t in eos_ids)
        self._limit = max_requests
        self._live: set[asyncio.Task[None]] = set()
        self._lock = threading.Lock()
        self._accepting = True
        self._keys = itertools.count()
        self._loop = asyncio.new_event_loop()
        self._engine: Any = None
        ready: list[BaseException | None] = []
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            try:
                self._engine = build()  # before the loop runs: SGLang may run it itself
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
                ready.append(exc)
                started.set()
                return
            ready.append(None)
            started.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="martlet-sglang", daemon=True)
        self._thread.start()
        started.wait()
        if ready[0] is not None:
            raise MartletError(
                "SGLang could not start",
                why=f"{type(ready[0]).__name__}: {ready[0]}",
                fix="see SGLang's log above (a lower --mem-fraction-static, a smaller "
                "--max-model-len, or more GPUs with --tensor-parallel-size)",
                cause=ready[0],
            )

    @classmethod
    def serving(cls, model: str, **options: Any) -> SglangEngine:
        """Start SGLang on ``model`` (a model id or folder) with ``adapters`` (name -> PEFT
        LoRA folder); see :class:`martlet.interfaces.ServingEngine` and
        :class:`martlet_sglang.options.SglangOptions`.

        Raises:
            MissingDependencyError: SGLang is not installed.
            MartletError: no CUDA GPU here (SGLang has no CPU backend), or SGLang failed.
        """
        from martlet_sglang.launch import start

        return start(cls, model, **options)

    # ------------------------------------------------------------------ the interface

    def adapters(self) -> list[str]:
        return sorted(self._adapters)

    def submit(
        self,
        prompt_ids: Sequence[int],
        params: SamplingParams,
        *,
        adapter: str | None = None,
        request_id: str = "",
    ) -> Stream:
        prompt = check_request(prompt_ids, params, adapter, self)
        config = to_sglang(params, len(prompt))  # refusals are raised here
        key = f"martlet-{next(self._keys)}"
        stream = Stream(request_id or key)
        with self._lock:
            if not self._accepting:
                raise EngineStoppedError()
            if len(self._live) >= self._limit:
                raise QueueFullError(
                    f"{len(self._live)} requests are already queued or running",
                    fix="retry shortly, or raise --max-queued-requests",
                )
            future = asyncio.run_coroutine_threadsafe(
                self._drive(key, prompt, config, params, adapter, stream), self._loop
            )
        future.add_done_callback(lambda f: f.exception() and stream.close(f.exception()))
        return stream

    def shutdown(self, drain: bool = True) -> None:
        with self._lock:
            if not self._accepting and not self._thread.is_alive():
                return
            self._accepting = False

        async def stop() -> None:
            tasks = list(self._live)
            if not drain:
                for task in tasks:
                    task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result()
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        if self._engine is not None:
            self._engine.shutdown()

    # ------------------------------------------------------------------ one request

    async def _drive(
        self,
        key: str,
        prompt: list[int],
        config: dict[str, Any],
        params: SamplingParams,
        adapter: str | None,
        stream: Stream,
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._live.add(task)
        emitted = 0
        try:
            chunks = await self._engine.async_generate(
                input_ids=prompt, stream=True, rid=key, lora_path=adapter,
                **config,
            )  # fmt: skip
            async for chunk in chunks:
                if stream.cancelled:
                    break
                step = new_tokens(chunk, params, emitted, self._eos)
                if emitted == 0 and params.prompt_logprobs is not None:
                    step.prompt_logprobs = prompt_logprobs(chunk, prompt, params.prompt_logprobs)
                emitted += len(step.token_ids)
                if step.token_ids or step.finish_reason or step.prompt_logprobs:
                    stream.put(step)
                if step.finish_reason is not None:
                    stream.close()
                    return
            stream.put(Step([], finish_reason="abort"))
            stream.close()
        except asyncio.CancelledError:  # shutdown(drain=False)
            stream.put(Step([], finish_reason="abort"))
            stream.close()
        except MartletError as exc:
            stream.close(exc)
        except Exception as exc:  # noqa: BLE001 - this request fails, the others go on
            log.exception("SGLang failed a request")
            stream.close(MartletError("generation failed", why=f"{type(exc).__name__}: {exc}"))
        finally:
            self._live.discard(task)
            # the answer may have ended here (a stop token SGLang was told to ignore), or been
            # cancelled: stop SGLang decoding it (a no-op for a request SGLang finished)
            _abort(self._engine, key)


def _abort(engine: Any, key: str) -> None:
    manager = getattr(engine, "tokenizer_manager", None)
    abort = getattr(manager, "abort_request", None)
    if abort is not None:
        try:
            abort(key)
        except Exception:  # noqa: BLE001 - the request is gone either way
            log.debug("SGLang's abort_request failed", exc_info=True)
