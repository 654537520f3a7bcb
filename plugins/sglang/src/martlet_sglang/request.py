"""Martlet's request onto SGLang's ``async_generate`` and SGLang's stream chunks back.

A chunk is a dict: ``output_ids`` and ``meta_info`` (``completion_tokens`` so far,
``finish_reason`` as ``{"type": "stop" | "length" | "abort", ...}`` or None, and with
``return_logprob`` the ``output_token_logprobs`` / ``output_top_logprobs`` /
``input_token_logprobs`` / ``input_top_logprobs`` lists of ``(logprob, token_id, text)``).
Whether a streamed chunk carries the whole answer so far or only its new part depends on
SGLang's version and settings, so the new tokens are always taken as the last
``completion_tokens - emitted`` of what it carries.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from martlet.errors import MartletError
from martlet.generation import (
    SamplingParams,
    Step,
    TokenLogprob,
    checked_prompt,
)


def check_request(
    prompt_ids: Sequence[int], params: SamplingParams, adapter: str | None, engine: Any
) -> list[int]:
    """The prompt as ints, or a :class:`BadRequestError` naming what is wrong
    (:func:`martlet.generation.checked_prompt`)."""
    return checked_prompt(
        prompt_ids,
        params,
        vocab_size=engine.vocab_size,
        max_model_len=engine.max_model_len,
        adapter=adapter,
        adapters=engine.adapters(),
    )


def to_sglang(params: SamplingParams, prompt_len: int) -> dict[str, Any]:
    """The keywords of ``Engine.async_generate`` (besides the prompt) for ``params``."""
    sampling: dict[str, Any] = {
        "max_new_tokens": params.max_tokens,
        "temperature": params.temperature,
        "top_p": params.top_p,
        "top_k": params.top_k or -1,  # SGLang's "off"
        "presence_penalty": params.presence_penalty,
        "frequency_penalty": params.frequency_penalty,
        "repetition_penalty": params.repetition_penalty,
        # the answer's end is decided by SglangEngine, token by token (the ending token kept)
        "ignore_eos": True,
        "skip_special_tokens": False,
    }
    if params.seed is not None:
        sampling["sampling_seed"] = params.seed
    asks = params.logprobs is not None or params.prompt_logprobs is not None
    keywords: dict[str, Any] = {"sampling_params": sampling, "return_logprob": asks}
    if asks:
        keywords["top_logprobs_num"] = max(params.logprobs or 0, params.prompt_logprobs or 0)
        keywords["logprob_start_len"] = 0 if params.prompt_logprobs is not None else prompt_len
    return keywords


def new_tokens(chunk: dict, params: SamplingParams, emitted: int, eos: frozenset[int]) -> Step:
    """The :class:`Step` of ``chunk``'s tokens past the first ``emitted``: cut after the first
    end-of-sequence (unless ``ignore_eos``) or stop token, ``stop``; ``length`` at
    ``max_tokens``."""
    meta = chunk.get("meta_info", {})
    count = int(meta.get("completion_tokens", emitted)) - emitted
    ids = [int(t) for t in chunk.get("output_ids", [])[-count:]] if count > 0 else []
    logprobs = None
    if params.logprobs is not None:
        chosen = meta.get("output_token_logprobs", [])[-count:] if count > 0 else []
        tops = meta.get("output_top_logprobs", [])[-count:] if count > 0 else []
        tops = list(tops) + [None] * (len(ids) - len(tops))
        logprobs = [
            _logprob(t, c, top, params.logprobs)
            for t, c, top in zip(ids, chosen, tops, strict=True)
        ]
    enders = set(params.stop_token_ids) | (set() if params.ignore_eos else eos)
    finish = None
    for i, token in enumerate(ids):
        if token in enders:
            ids, finish = ids[: i + 1], "stop"
            logprobs = logprobs[: i + 1] if logprobs is not None else None
            break
    if finish is None and emitted + len(ids) >= params.max_tokens:
        finish = "length"
    reason = (meta.get("finish_reason") or {}).get("type") if finish is None else None
    if reason is not None:
        if reason not in ("stop", "length", "abort"):
            raise MartletError(f"SGLang ended the request with {reason!r}", why=str(meta))
        finish = reason
    return Step(ids, logprobs, finish)


def prompt_logprobs(chunk: dict, prompt: list[int], k: int) -> list[TokenLogprob | None]:
    """Each prompt token's log-probability and its ``k`` most likely alternatives (the first
    token: None)."""
    meta = chunk.get("meta_info", {})
    chosen = meta.get("input_token_logprobs") or []
    tops = list(meta.get("input_top_logprobs") or []) + [None] * len(prompt)
    out: list[TokenLogprob | None] = [None]
    for i, token in enumerate(prompt[1:], start=1):
        entry = chosen[i] if i < len(chosen) else None
        out.append(_logprob(token, entry, tops[i], k) if entry and entry[0] is not None else None)
    return out


def _logprob(token: int, chosen: Any, top: Any, k: int) -> TokenLogprob:
    """A :class:`TokenLogprob` from SGLang's ``(logprob, token_id, text)`` entries."""
    alternatives = sorted(((int(t), float(v)) for v, t, *_ in (top or [])), key=lambda x: -x[1])
    return TokenLogprob(int(token), float(chosen[0]), alternatives[:k])
