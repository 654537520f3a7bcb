"""A :class:`~martlet_serve.service.Job`'s answer in OpenAI's wire format: chat completions
(``chat.completion`` / ``chat.completion.chunk``, log-probabilities as ``content`` entries with
``token``, ``logprob``, ``bytes`` and ``top_logprobs``) and completions (``text_completion``,
log-probabilities in the legacy form: ``tokens``, ``token_logprobs``, ``top_logprobs``,
``text_offset``)."""

from __future__ import annotations

import math
from typing import Any

from martlet.generation import TokenLogprob

#: the floor of a log-probability on the wire (JSON has no -Infinity; vLLM's choice)
FLOOR = -9999.0


def _lp(value: float) -> float:
    value = float(value)
    return FLOOR if math.isnan(value) or value < FLOOR else value


def _head(job: Any, chunk: bool) -> dict[str, Any]:
    if job.kind == "chat":
        kind = "chat.completion.chunk" if chunk else "chat.completion"
    else:
        kind = "text_completion"
    return {"id": job.id, "object": kind, "created": job.created, "model": job.model}


def whole(job: Any) -> dict[str, Any]:
    """The response of a request that did not stream."""
    choices = []
    for choice in sorted(job.choices, key=lambda c: c.index):
        logprobs = None
        if job.logprobs is not None:
            logprobs = (
                chat_logprobs(job, choice.tokens)
                if job.kind == "chat"
                else legacy_logprobs(job, choice.tokens, 0)
            )
        row: dict[str, Any] = {"index": choice.index}
        if job.kind == "chat":
            row["message"] = {"role": "assistant", "content": choice.text}
        else:
            row["text"] = choice.text
        row["logprobs"] = logprobs
        row["finish_reason"] = choice.finish_reason
        choices.append(row)
    return {**_head(job, False), "choices": choices, "usage": job.usage()}


def first_chunk(job: Any, choice: Any) -> dict[str, Any] | None:
    """A chat choice's opening chunk (its role); completions have none."""
    if job.kind != "chat":
        return None
    row = {
        "index": choice.index,
        "delta": {"role": "assistant", "content": ""},
        "logprobs": None,
        "finish_reason": None,
    }
    return _chunk(job, row)


def chunk(job: Any, choice: Any, piece: Any) -> dict[str, Any]:
    """The chunk of one :class:`~martlet_serve.service.Piece` of ``choice``."""
    logprobs = None
    row: dict[str, Any] = {"index": choice.index}
    if job.kind == "chat":
        row["delta"] = {"content": piece.text} if piece.text else {}
        if job.logprobs is not None:
            logprobs = chat_logprobs(job, piece.tokens)
    else:
        row["text"] = piece.text
        if job.logprobs is not None:
            logprobs = legacy_logprobs(job, piece.tokens, choice.offset)
            choice.offset += sum(len(t) for t in logprobs["tokens"])
    row["logprobs"] = logprobs
    row["finish_reason"] = piece.finish_reason
    return _chunk(job, row)


def usage_chunk(job: Any) -> dict[str, Any]:
    """The last chunk with ``stream_options.include_usage``: no choices, the usage."""
    return {**_head(job, True), "choices": [], "usage": job.usage()}


def _chunk(job: Any, row: dict[str, Any]) -> dict[str, Any]:
    out = {**_head(job, True), "choices": [row]}
    if job.stream_usage:
        out["usage"] = None
    return out


# ---------------------------------------------------------------------- log-probabilities


def _entry(job: Any, token_id: int, logprob: float) -> dict[str, Any]:
    text, raw = job.texts(token_id)
    return {"token": text, "logprob": _lp(logprob), "bytes": raw}


def chat_logprobs(
    job: Any, tokens: list[tuple[int, TokenLogprob | None]]
) -> dict[str, list[dict[str, Any]]]:
    """``{"content": [...]}``: each token with its ``top_logprobs`` most likely alternatives."""
    content = []
    for token_id, lp in tokens:
        if lp is None:
            continue
        entry = _entry(job, token_id, lp.logprob)
        entry["top_logprobs"] = [_entry(job, t, v) for t, v in lp.top[: job.logprobs]]
        content.append(entry)
    return {"content": content}


def legacy_logprobs(
    job: Any, tokens: list[tuple[int, TokenLogprob | None]], start: int
) -> dict[str, list[Any]]:
    """The completions form, ``text_offset`` counted from ``start``: each token's text and
    log-probability (None for a prompt's first token) and its ``logprobs`` most likely
    alternatives with itself (up to ``logprobs`` + 1, as OpenAI's legacy API)."""
    out: dict[str, list[Any]] = {
        "tokens": [],
        "token_logprobs": [],
        "top_logprobs": [],
        "text_offset": [],
    }
    offset = start
    for token_id, lp in tokens:
        text = job.texts.text(token_id)
        out["tokens"].append(text)
        out["text_offset"].append(offset)
        offset += len(text)
        if lp is None:
            out["token_logprobs"].append(None)
            out["top_logprobs"].append(None)
            continue
        out["token_logprobs"].append(_lp(lp.logprob))
        top = {job.texts.text(t): _lp(v) for t, v in lp.top[: job.logprobs]}
        top.setdefault(text, _lp(lp.logprob))
        out["top_logprobs"].append(top)
    return out
