"""Martlet's request onto LMDeploy's ``GenerationConfig`` and LMDeploy's streamed ``GenOut``
objects back.

A ``GenOut`` carries ``generate_token_len`` (the answer's tokens so far), ``token_ids`` (the
tail of the sequence its detokenizer has not finished with: at least the new tokens) and
``logprobs`` (one ``{token_id: logprob}`` of the most likely tokens per new token), and
``finish_reason`` (``stop``, ``length``, ``error``, ``abort`` or None). The new tokens are the
last ``generate_token_len - emitted`` of ``token_ids``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from martlet.errors import MartletError
from martlet.generation import (
    BadRequestError,
    SamplingParams,
    Step,
    TokenLogprob,
    checked_prompt,
)

#: what an OpenAI-style log-probability says for a token the engine reports none for
NO_LOGPROB = -9999.0


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


def to_lmdeploy(params: SamplingParams) -> Any:
    """LMDeploy's ``GenerationConfig`` for ``params``. LMDeploy has no presence or frequency
    penalty and no prompt log-probabilities: asking for them is a :class:`BadRequestError`."""
    for name, off in (("presence_penalty", 0.0), ("frequency_penalty", 0.0),
                      ("prompt_logprobs", None)):  # fmt: skip
        if getattr(params, name) != off:
            raise BadRequestError(
                f"the lmdeploy backend does not support {name}",
                param=name,
                fix="leave it out, or serve with --infer-backend vllm or pt",
            )
    from lmdeploy import GenerationConfig

    greedy = params.temperature == 0
    penalised = params.repetition_penalty != 1.0
    return GenerationConfig(
        max_new_tokens=params.max_tokens,
        # LMDeploy's greedy mode drops the repetition penalty: a penalised greedy request
        # samples from the single most likely token instead (the same choice, penalised)
        do_sample=not greedy or penalised,
        temperature=params.temperature if not greedy else 1.0,
        top_p=params.top_p,
        top_k=1 if greedy else params.top_k,  # 0: off
        repetition_penalty=params.repetition_penalty,
        random_seed=params.seed,
        logprobs=params.logprobs,
        # the answer's end is decided by LmdeployEngine, token by token (the ending token kept)
        ignore_eos=True,
        stop_token_ids=[],
        skip_special_tokens=False,
    )


def to_step(output: Any, params: SamplingParams, emitted: int, eos: frozenset[int]) -> Step:
    """The :class:`Step` of ``output``'s tokens past the first ``emitted``: cut after the first
    end-of-sequence (unless ``ignore_eos``) or stop token, ``stop``; ``length`` at
    ``max_tokens``."""
    count = int(output.generate_token_len) - emitted
    ids = [int(t) for t in (output.token_ids or [])[-count:]] if count > 0 else []
    logprobs = None
    if params.logprobs is not None:
        entries = list(output.logprobs or [])[-count:] if count > 0 else []
        entries += [{}] * (len(ids) - len(entries))
        logprobs = [_logprob(t, e, params.logprobs) for t, e in zip(ids, entries, strict=True)]
    enders = set(params.stop_token_ids) | (set() if params.ignore_eos else eos)
    finish = None
    for i, token in enumerate(ids):
        if token in enders:
            ids, finish = ids[: i + 1], "stop"
            logprobs = logprobs[: i + 1] if logprobs is not None else None
            break
    if finish is None and emitted + len(ids) >= params.max_tokens:
        finish = "length"
    reason = output.finish_reason if finish is None else None
    if reason == "error":
        raise MartletError("LMDeploy failed the request", why=str(getattr(output, "response", "")))
    if reason in ("stop", "length", "abort"):
        finish = reason
    return Step(ids, logprobs, finish)


def _logprob(token: int, entries: dict, k: int) -> TokenLogprob:
    top = sorted(((int(t), float(v)) for t, v in entries.items()), key=lambda item: -item[1])
    return TokenLogprob(int(token), float(entries.get(token, NO_LOGPROB)), top[:k])
