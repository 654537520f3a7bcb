"""Errors as OpenAI's API reports them: ``{"error": {"message", "type", "param", "code"}}``
with the HTTP status that says what kind of failure it is."""

from __future__ import annotations

import logging
from typing import Any

from martlet.errors import MartletError

log = logging.getLogger("martlet.serve")

#: OpenAI's error ``type`` for each status the server answers with
TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "service_unavailable_error",
}


class ApiError(MartletError):
    """A request the server answers with ``status`` and the OpenAI error envelope.

    A :class:`~martlet.errors.MartletError`, so the Python API (:mod:`martlet_serve.api`)
    raises the same errors the server answers with.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.param = param
        self.code = code
        self.headers = dict(headers or {})

    def envelope(self) -> dict[str, Any]:
        return envelope(self.status, self.what, param=self.param, code=self.code)


def envelope(
    status: int, message: str, *, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {
        "error": {
            "message": message,
            "type": TYPES.get(status, "invalid_request_error" if status < 500 else "server_error"),
            "param": param,
            "code": code,
        }
    }


def text_of(exc: MartletError) -> str:
    """A MartletError's what, why and fix as one line."""
    text = exc.what
    if exc.why:
        text += f": {exc.why}"
    if exc.fix:
        text += f" ({exc.fix})"
    return text


def from_engine(
    exc: BaseException, prompt_param: str = "messages", *, submitting: bool = False
) -> ApiError:
    """The API error for what an engine raised at ``submit`` (``submitting``) or while
    decoding.

    :class:`~martlet.generation.BadRequestError` is 400 (its ``param``; the prompt's own
    field for the route), :class:`~martlet.generation.QueueFullError` 429 with
    ``Retry-After``, :class:`~martlet.generation.EngineStoppedError` 503 (as is another
    MartletError at ``submit``: engines written before that error had a name); anything else
    is a 500 whose message hides the details, which are logged.
    """
    from martlet.generation import BadRequestError, EngineStoppedError, QueueFullError

    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, BadRequestError):
        param = exc.param
        if param in ("messages", "prompt"):
            param = prompt_param
        return ApiError(400, text_of(exc), param=param, code="invalid_value")
    if isinstance(exc, QueueFullError):
        return ApiError(
            429,
            "the server is busy: " + text_of(exc),
            code="queue_full",
            headers={"Retry-After": "1"},
        )
    if isinstance(exc, EngineStoppedError) or (submitting and isinstance(exc, MartletError)):
        return ApiError(503, "the engine takes no request now: " + text_of(exc), code="unavailable")
    log.error("generation failed", exc_info=exc)
    return ApiError(500, "the server failed to answer this request (its log says why)")
