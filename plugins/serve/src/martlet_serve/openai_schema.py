"""The OpenAI request bodies ``martlet deploy`` accepts, as pydantic models.

Only the shape is checked here (types, required fields, no unknown field: a field the server
does not implement — ``tools``, ``logit_bias``, ``response_format`` — is refused rather than
ignored); the values against the server's bounds are checked by :mod:`martlet_serve.service`
(HTTP 400). :func:`parse` turns a body into a model or an
:class:`~martlet_serve.api_errors.ApiError` (HTTP 422), for the server and the Python API alike.

Besides OpenAI's fields, vLLM's ``top_k``, ``repetition_penalty`` and ``ignore_eos`` are taken.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from martlet_serve.api_errors import ApiError


class _Strict(BaseModel):
    # strict: "5" is no integer and 1 no boolean, as in OpenAI's own API
    model_config = ConfigDict(extra="forbid", strict=True)


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class Message(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None


class StreamOptions(_Strict):
    include_usage: bool = False


class _Sampling(_Strict):
    """The fields both routes share."""

    model: str | None = Field(
        None, description="A served model (GET /v1/models); default: the base"
    )
    max_tokens: int | None = None
    n: int = 1
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    # vLLM's
    top_k: int | None = None
    repetition_penalty: float | None = None
    ignore_eos: bool = False


class ChatCompletionRequest(_Sampling):
    messages: list[Message]
    max_completion_tokens: int | None = None
    logprobs: bool = False
    top_logprobs: int | None = None


class CompletionRequest(_Sampling):
    prompt: str | list[str] | list[int] | list[list[int]]
    echo: bool = False
    logprobs: int | None = None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse(body: bytes | str | dict[str, Any], model: type[_Strict]) -> Any:
    """``body`` (JSON text, or a decoded object) checked against ``model``.

    Raises:
        ApiError: 422, naming the first field that does not fit (its path in ``param``).
    """
    if isinstance(body, (bytes, str)):
        try:
            body = json.loads(body, parse_constant=_no_constant)
        except (ValueError, RecursionError) as exc:
            raise ApiError(
                422, f"the request body is not valid JSON: {exc}", code="invalid_json"
            ) from None
    if not isinstance(body, dict):
        raise ApiError(422, "the request body must be a JSON object", code="invalid_body")
    try:  # JSON may escape lone surrogates, which no tokenizer can encode
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(
            422, "the request body holds text that is not valid Unicode (a lone surrogate)",
            code="invalid_body",
        ) from None  # fmt: skip
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise validation_error(exc.errors()) from None


def validation_error(errors: list[Any]) -> ApiError:
    """The 422 for pydantic's (or FastAPI's) list of errors: the first one, by field path."""
    first = errors[0] if errors else {}
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    # a union's alternatives add their type names to the path ("str", "list[int]", ...)
    fields = [p for p in loc if not _is_type(p)]
    path = ".".join(fields)
    message = str(first.get("msg", "invalid request"))
    if len(fields) < len(loc) and fields and fields[-1] in _UNIONS:
        message = f"must be {_UNIONS[fields[-1]]}"
    elif first.get("type") == "extra_forbidden":
        message = "this server does not take this field"
    elif first.get("type") == "missing":
        message = "this field is required"
    return ApiError(422, f"{path or 'body'}: {message}", param=path or None, code="invalid_value")


def _is_type(part: str) -> bool:
    return any(c in part for c in "[]") or part in _TYPES or part.startswith("function-")


_TYPES = {"str", "int", "float", "bool", "list", "dict", "none", "TextPart", "StreamOptions"}
_UNIONS = {
    "prompt": "a string, a list of strings, a list of token ids or a list of token id lists",
    "stop": "a string or a list of strings",
    "content": "a string or a list of text parts",
}
