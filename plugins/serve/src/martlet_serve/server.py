"""The HTTP side of ``martlet deploy``: a FastAPI application over a
:class:`~martlet_serve.service.Service`.

Routes: ``GET /health`` (no authentication; 503 while the model loads or the server stops),
``GET /v1/models`` (and ``/v1/models/{id}``), ``POST /v1/chat/completions`` and
``POST /v1/completions`` (``stream: true`` answers with server-sent events ending in
``data: [DONE]``). Every error is OpenAI's envelope (:mod:`martlet_serve.api_errors`). Two plain
ASGI layers run before the application: authentication (:mod:`martlet_serve.auth`; every route
but ``/health``) and the body size limit (413), which reads the body whole before any parsing.
A client that disconnects cancels its generation.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from martlet_serve.api_errors import ApiError, envelope, log
from martlet_serve.auth import Authenticator
from martlet_serve.openai_schema import (
    ChatCompletionRequest,
    CompletionRequest,
    parse,
    validation_error,
)

#: the one route that answers without authentication
OPEN_PATHS = frozenset({"/health"})


class ServerState:
    """Where the server stands: ``loading`` (no service yet), ``ready``, ``stopping``."""

    def __init__(self) -> None:
        self.service: Any = None
        self.status = "loading"

    def ready(self, service: Any) -> None:
        self.service, self.status = service, "ready"

    def stopping(self) -> None:
        self.status = "stopping"

    def require(self) -> Any:
        """The service, or a 503 saying why there is none."""
        if self.status == "ready":
            return self.service
        if self.status == "loading":
            raise ApiError(
                503, "the model is still loading; retry shortly", code="loading",
                headers={"Retry-After": "5"},
            )  # fmt: skip
        raise ApiError(503, "the server is shutting down", code="shutting_down")


def create_app(state: ServerState, auth: Authenticator, *, max_body_bytes: int) -> Any:
    """The ASGI application: the routes, wrapped in the body limit and authentication."""
    app = FastAPI(
        title="Martlet",
        summary="An OpenAI-compatible API (martlet deploy)",
        docs_url=None,  # the interactive pages load scripts from a CDN
        redoc_url=None,
    )

    def error(exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.envelope(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error(validation_error(list(exc.errors())))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 404:
            message = f"no route {request.url.path} (see GET /v1/models)"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        else:
            message = str(exc.detail)
        return JSONResponse(
            envelope(
                exc.status_code, message, code="not_found" if exc.status_code == 404 else None
            ),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return error(ApiError(500, "the server failed to answer this request (its log says why)"))

    @app.get("/health")
    async def health() -> Any:
        state.require()
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models() -> Any:
        return state.require().list_models()

    @app.get("/v1/models/{name:path}")
    async def model(name: str) -> Any:
        service = state.require()
        service.model(name)
        return next(m for m in service.list_models()["data"] if m["id"] == name)

    def body_schema(model: Any) -> dict[str, Any]:
        ref = {"$ref": f"#/components/schemas/{model.__name__}"}
        return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}

    def openapi() -> dict[str, Any]:
        """FastAPI's document, with the request bodies' schemas (the routes parse their
        bodies themselves, so FastAPI does not know them)."""
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi
            from pydantic.json_schema import models_json_schema

            document = get_openapi(title=app.title, version=app.version, routes=app.routes)
            _, schemas = models_json_schema(
                [(m, "validation") for m in (ChatCompletionRequest, CompletionRequest)],
                ref_template="#/components/schemas/{model}",
            )
            document.setdefault("components", {}).setdefault("schemas", {}).update(schemas["$defs"])
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    async def answer(request: Request, kind: str) -> Response:
        service = state.require()
        # rendering the chat template and tokenizing take milliseconds: a worker thread does
        # them, so the event loop goes on streaming the other requests' tokens meanwhile
        if kind == "chat":
            body = parse(await request.body(), ChatCompletionRequest)
            job = await run_in_threadpool(service.chat, body)
        else:
            body = parse(await request.body(), CompletionRequest)
            job = await run_in_threadpool(service.completion, body)
        if body.stream:
            return StreamingResponse(
                _events(job),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache"},
                background=BackgroundTask(_closed, job),
            )
        return JSONResponse(await _unless_disconnected(request, job))

    @app.post("/v1/chat/completions", openapi_extra=body_schema(ChatCompletionRequest))
    async def chat_completions(request: Request) -> Response:
        return await answer(request, "chat")

    @app.post("/v1/completions", openapi_extra=body_schema(CompletionRequest))
    async def completions(request: Request) -> Response:
        return await answer(request, "completion")

    return Authenticate(BodyLimit(app, max_body_bytes), auth)


async def _unless_disconnected(request: Any, job: Any) -> dict[str, Any]:
    """The job's response; if the client disconnects first, the job is cancelled."""

    async def gone() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    answer = asyncio.ensure_future(job.response())
    watch = asyncio.ensure_future(gone())
    try:
        await asyncio.wait({answer, watch}, return_when=asyncio.FIRST_COMPLETED)
        if not answer.done():
            job.cancel()
            answer.cancel()
            log.info("%s: the client went away after %d tokens; cancelled", job.id, _made(job))
            raise ApiError(499, "the client closed the connection")  # nobody reads it
        return answer.result()
    finally:
        watch.cancel()
        if not answer.done():
            job.cancel()
            answer.cancel()


async def _events(job: Any) -> AsyncIterator[str]:
    """Server-sent events of the job's chunks, then ``[DONE]``; an error after the response
    has started is sent as one event with the envelope."""
    try:
        async for chunk in job.chunks():
            yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"
    except ApiError as exc:
        yield f"data: {json.dumps(exc.envelope())}\n\n"
    except Exception as exc:  # noqa: BLE001 - the response has started: report in-band
        log.error("%s failed while streaming", job.id, exc_info=exc)
        failed = ApiError(500, "the server failed to answer this request (its log says why)")
        yield f"data: {json.dumps(failed.envelope())}\n\n"
    finally:
        job.cancel()
    yield "data: [DONE]\n\n"


async def _closed(job: Any) -> None:
    """After a streamed response, ended or cut short: a client that went away before the
    end has its generation cancelled."""
    if any(choice.finish_reason is None for choice in job.choices):
        job.cancel()
        log.info("%s: the client went away after %d tokens; cancelled", job.id, _made(job))


def _made(job: Any) -> int:
    return sum(choice.generated for choice in job.choices)


# ---------------------------------------------------------------------- ASGI layers


async def _send_error(send: Any, exc: ApiError) -> None:
    body = json.dumps(exc.envelope()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in exc.headers.items()]
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Authenticate:
    """Refuses (401) every HTTP request but those to :data:`OPEN_PATHS` that ``auth`` does not
    accept."""

    def __init__(self, app: Any, auth: Authenticator) -> None:
        self.app, self.auth = app, auth

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and self.auth.enabled and scope["path"] not in OPEN_PATHS:
            header = None
            for name, value in scope.get("headers", ()):
                if name == b"authorization":
                    header = value.decode("latin-1")
                    break
            try:
                self.auth.check(header)
            except ApiError as exc:
                await _send_error(send, exc)
                return
        await self.app(scope, receive, send)


class BodyLimit:
    """Answers 413 for a request body over ``limit`` bytes (by its ``Content-Length``, or as it
    arrives), before anything parses it; the body read is handed on whole."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        too_large = ApiError(
            413,
            f"the request body is larger than this server's limit of {self.limit} bytes",
            code="request_too_large",
        )
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await _send_error(send, too_large)
                return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.limit:
                await _send_error(send, too_large)
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
