"""The server's engines in-process, without HTTP: ``InferEngine``, ``InferRequest``,
``RequestConfig``.

::

    from martlet_serve import InferEngine, InferRequest, RequestConfig

    question = {"role": "user", "content": "What is the capital of France?"}
    with InferEngine("smollm2-135m-instruct") as engine:
        [answer] = engine.infer(
            [InferRequest(messages=[question])], RequestConfig(max_tokens=32, temperature=0)
        )
        print(answer.choices[0].message.content)

A request goes through the same code as ``martlet deploy``'s (:mod:`martlet_serve.service`):
the same checks and errors (:class:`~martlet_serve.api_errors.ApiError`, a MartletError whose
``status`` is the HTTP status the server would answer), the same templates, stop strings and
responses — OpenAI's wire format as :class:`Response` objects (dicts whose keys also read as
attributes). Requests given together are decoded together (continuous batching).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from martlet.errors import MartletError


@dataclass(kw_only=True)
class InferRequest:
    """One request: a chat (``messages``) or a text completion (``prompt``: text or token
    ids); ``model`` picks an adapter by its name (None: the base model)."""

    messages: list[dict[str, Any]] | None = None
    prompt: str | list[int] | None = None
    model: str | None = None


@dataclass(kw_only=True)
class RequestConfig:
    """How to answer: OpenAI's request fields (None: the server's default for each).

    ``logprobs`` and ``top_logprobs`` read as in chat requests; for a completion, the
    ``top_logprobs`` most likely tokens (0 with ``logprobs`` alone) become its ``logprobs``.
    ``echo`` (completions) returns the prompt before the answer.
    """

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = 1
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float | None = None
    logprobs: bool = False
    top_logprobs: int | None = None
    ignore_eos: bool = False
    echo: bool = False
    stream: bool = False
    include_usage: bool = True  #: with ``stream``: a last chunk with the usage


class Response(dict):
    """An OpenAI-shaped response or chunk: a dict whose keys also read as attributes
    (``response.choices[0].message.content``)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return _wrap(self[name])
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, name: str) -> Any:
        return _wrap(dict.__getitem__(self, name))


def _wrap(value: Any) -> Any:
    if isinstance(value, dict) and not isinstance(value, Response):
        return Response(value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


def body(request: InferRequest, config: RequestConfig) -> tuple[str, dict[str, Any]]:
    """The route (``chat`` or ``completion``) and OpenAI request body of ``request``."""
    if (request.messages is None) == (request.prompt is None):
        raise MartletError(
            "an InferRequest needs messages or a prompt (one of them)",
            fix="InferRequest(messages=[{'role': 'user', 'content': '...'}]) or "
            "InferRequest(prompt='...')",
        )
    fields = {
        f.name: getattr(config, f.name)
        for f in dataclasses.fields(config)
        if f.name not in ("logprobs", "top_logprobs", "echo", "stream", "include_usage")
    }
    out: dict[str, Any] = {k: v for k, v in fields.items() if v is not None}
    if request.model is not None:
        out["model"] = request.model
    if config.stream:
        out["stream"] = True
        if config.include_usage:
            out["stream_options"] = {"include_usage": True}
    if request.messages is not None:
        out["messages"] = [dict(m) for m in request.messages]
        if config.echo:
            raise MartletError("echo is for completions (a prompt), not chats")
        if config.logprobs:
            out["logprobs"] = True
        if config.top_logprobs is not None:
            out["top_logprobs"] = config.top_logprobs
        return "chat", out
    out["prompt"] = request.prompt
    out["echo"] = config.echo
    if config.logprobs or config.top_logprobs is not None:
        out["logprobs"] = config.top_logprobs or 0
    return "completion", out


class InferEngine:
    """A model (or training run) and its adapters, answering requests in-process.

    Args:
        model: what ``martlet deploy --model`` takes: a model id, folder, .gguf file or run
            directory.
        adapters: name -> adapter folder (or LoRA run directory), served beside the model.
        infer_backend: the backend record (it must claim ``serve``).
        options: any other ``martlet deploy`` option by name (``template``, ``system``,
            ``device``, ``torch_dtype``, ``max_model_len``, ``max_batch_size``,
            ``max_queued_requests``, ``max_tokens_limit``, the backend's own, ...).

    Raises:
        MartletError: a bad option, or a model that cannot load.
    """

    def __init__(
        self,
        model: str,
        *,
        adapters: Mapping[str, str] | Sequence[str] | None = None,
        infer_backend: str = "pt",
        **options: Any,
    ) -> None:
        from martlet_serve.deploy import config_from, load_service

        if isinstance(adapters, Mapping):
            entries = [f"{name}={folder}" for name, folder in adapters.items()]
        else:
            entries = list(adapters or [])
        self.config = config_from(
            {"model": model, "adapters": entries, "infer_backend": infer_backend, **options}
        )
        self.service = load_service(self.config)

    @property
    def models(self) -> list[str]:
        """The names requests may give as ``model``: the base model's, then the adapters'."""
        return list(self.service.models)

    def _job(self, request: InferRequest, config: RequestConfig) -> Any:
        from martlet_serve.openai_schema import ChatCompletionRequest, CompletionRequest, parse

        route, data = body(request, config)
        if route == "chat":
            return self.service.chat(parse(data, ChatCompletionRequest))
        return self.service.completion(parse(data, CompletionRequest))

    async def infer_async(
        self, requests: Sequence[InferRequest], request_config: RequestConfig | None = None
    ) -> list[Any]:
        """One response per request (chat completions or text completions); with
        ``stream``, one async iterator of chunks per request.

        Raises:
            ApiError: a request the server would refuse (its ``status``: 400, 404, 422, 429).
        """
        config = request_config or RequestConfig()
        jobs = []
        try:
            for request in requests:
                jobs.append(self._job(request, config))
        except BaseException:
            for job in jobs:
                job.cancel()
            raise
        if config.stream:
            return [_chunks(job) for job in jobs]
        answers = await asyncio.gather(*(job.response() for job in jobs))
        return [Response(a) for a in answers]

    def infer(
        self, requests: Sequence[InferRequest], request_config: RequestConfig | None = None
    ) -> list[Any]:
        """:meth:`infer_async`, blocking; with ``stream``, one iterator of chunks per
        request. Call it where no event loop runs (else await :meth:`infer_async`)."""
        config = request_config or RequestConfig()
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise MartletError(
                "InferEngine.infer was called inside a running event loop",
                fix="await engine.infer_async(...) there instead",
            )
        if config.stream:
            jobs = [self._job(request, config) for request in requests]
            return [_blocking(_chunks(job)) for job in jobs]
        return asyncio.run(self.infer_async(requests, config))

    def close(self) -> None:
        """Finish what is in flight and free the engine."""
        self.service.engine.shutdown(drain=True)

    def __enter__(self) -> InferEngine:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


async def _chunks(job: Any) -> AsyncIterator[Response]:
    async for chunk in job.chunks():
        yield Response(chunk)


def _blocking(chunks: AsyncIterator[Response]) -> Iterator[Response]:
    """Iterate ``chunks`` on a private event loop, one chunk at a time."""
    loop = asyncio.new_event_loop()
    try:
        while True:
            try:
                yield loop.run_until_complete(chunks.__anext__())
            except StopAsyncIteration:
                return
    finally:
        loop.run_until_complete(chunks.aclose())
        loop.close()
