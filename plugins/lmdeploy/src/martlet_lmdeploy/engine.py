"""The lmdeploy backend's serving engine: LMDeploy's ``AsyncEngine`` driven from an asyncio
loop thread.

``AsyncEngine.generate(input_ids=..., stream_response=True)`` answers a request with a stream of
``GenOut`` objects on the event loop it runs on. :class:`LmdeployEngine` builds the engine on a
loop of its own thread, runs one coroutine per request there (a session each), and turns each
output's new tokens into a :class:`~martlet.generation.Step`. The end of a request is decided
here, token by token (the model's end-of-sequence tokens unless ``ignore_eos``, and
``stop_token_ids``): LMDeploy drops the stop token from what it streams, and the contract keeps
it. LMDeploy is told to ignore both and its stream is closed once the answer ends (closing it
cancels the session in LMDeploy).
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

from martlet_lmdeploy.request import check_request, to_lmdeploy, to_step

log = logging.getLogger("martlet.lmdeploy")


class LmdeployEngine:
    """A :class:`martlet.interfaces.ServingEngine` over LMDeploy's ``AsyncEngine`` (build one
    with :meth:`serving`). ``build`` makes LMDeploy's engine; it runs on the engine's own
    thread."""

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
                self._engine = build()  # before the loop runs: LMDeploy may run it itself
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
                ready.append(exc)
                started.set()
                return
            ready.append(None)
            started.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="martlet-lmdeploy", daemon=True)
        self._thread.start()
        started.wait()
        if ready[0] is not None:
            raise MartletError(
                "LMDeploy could not start",
                why=f"{type(ready[0]).__name__}: {ready[0]}",
                fix="see LMDeploy's log above (a lower --cache-max-entry-count, a smaller "
                "--max-model-len, or more GPUs with --tensor-parallel-size)",
                cause=ready[0],
            )

    @classmethod
    def serving(cls, model: str, **options: Any) -> LmdeployEngine:
        """Start LMDeploy on ``model`` (a model id or folder) with ``adapters`` (name -> PEFT
        LoRA folder, served by LMDeploy's PyTorch engine); see
        :class:`martlet.interfaces.ServingEngine` and
        :class:`martlet_lmdeploy.options.LmdeployOptions`.

        Raises:
            MissingDependencyError: LMDeploy is not installed.
            MartletError: no CUDA GPU here (LMDeploy has no CPU backend), or LMDeploy failed.
        """
        from martlet_lmdeploy.launch import start

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
        config = to_lmdeploy(params)  # refusals are raised here
        key = next(self._keys) + 1  # LMDeploy's session id
        stream = Stream(request_id or f"req-{key}")
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
        close = getattr(self._engine, "close", None)  # (older LMDeploy has none)
        if close is not None:
            close()

    # ------------------------------------------------------------------ one request

    async def _drive(
        self,
        key: int,
        prompt: list[int],
        config: Any,
        params: SamplingParams,
        adapter: str | None,
        stream: Stream,
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._live.add(task)
        emitted = 0
        outputs = self._engine.generate(
            None, key, gen_config=config, stream_response=True,
            sequence_start=True, sequence_end=True, input_ids=prompt, adapter_name=adapter,
        )  # fmt: skip
        try:
            async for output in outputs:
                if stream.cancelled:
                    break
                step = to_step(output, params, emitted, self._eos)
                emitted += len(step.token_ids)
                if step.token_ids or step.finish_reason:
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
            log.exception("LMDeploy failed a request")
            stream.close(MartletError("generation failed", why=f"{type(exc).__name__}: {exc}"))
        finally:
            self._live.discard(task)
            # closing LMDeploy's stream cancels the session if it is still decoding (an answer
            # that ended here, at a stop token LMDeploy was told to ignore, or a cancel)
            await outputs.aclose()
