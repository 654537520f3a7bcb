"""Martlet's request onto vLLM's and vLLM's answer back: :class:`martlet.generation.SamplingParams`
to ``vllm.SamplingParams``, a ``RequestOutput`` delta to a :class:`martlet.generation.Step`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from martlet.errors import MartletError
from martlet.generation import SamplingParams, Step, TokenLogprob

#: vLLM's finish reasons that are Martlet's too (anything else is a failure)
FINISH = {"stop": "stop", "length": "length", "abort": "abort"}


def to_vllm(params: SamplingParams) -> Any:
    """vLLM's ``SamplingParams`` for ``params``: one sequence, streamed as deltas, token ids
    only (text and stop strings are the server's), log-probabilities of the raw model."""
    import vllm
    from vllm.sampling_params import RequestOutputKind

    return vllm.SamplingParams(
        n=1,
        max_tokens=params.max_tokens,
        temperature=params.temperature,
        top_p=params.top_p,
        top_k=params.top_k or -1,  # vLLM's "off" (0 is off too only in recent versions)
        seed=params.seed,
        presence_penalty=params.presence_penalty,
        frequency_penalty=params.frequency_penalty,
        repetition_penalty=params.repetition_penalty,
        stop_token_ids=list(params.stop_token_ids),
        ignore_eos=params.ignore_eos,
        logprobs=params.logprobs,
        prompt_logprobs=params.prompt_logprobs,
        output_kind=RequestOutputKind.DELTA,
        detokenize=False,
        skip_special_tokens=False,
    )


def token_logprob(token: int, entries: Mapping[int, Any], k: int) -> TokenLogprob:
    """The :class:`TokenLogprob` of ``token`` from vLLM's ``{token_id: Logprob}`` of one
    position (the chosen token and the ``k`` most likely, each with its ``rank``)."""
    top = sorted(
        ((rank, t, float(lp.logprob)) for t, lp in entries.items() if (rank := lp.rank) <= k),
        key=lambda item: item[0],
    )
    return TokenLogprob(int(token), float(entries[token].logprob), [(t, v) for _, t, v in top])


def to_step(output: Any, params: SamplingParams, *, first: bool) -> Step:
    """The :class:`Step` of one ``RequestOutput`` delta of a request (``first``: its first,
    which carries the prompt's log-probabilities)."""
    completion = output.outputs[0]
    ids = [int(t) for t in completion.token_ids]
    logprobs = None
    if params.logprobs is not None:
        logprobs = [
            token_logprob(t, entries, params.logprobs)
            for t, entries in zip(ids, completion.logprobs or [], strict=True)
        ]
    prompt_logprobs = None
    if first and params.prompt_logprobs is not None:
        prompt_logprobs = _prompt_logprobs(
            output.prompt_token_ids, output.prompt_logprobs, params.prompt_logprobs
        )
    finish = completion.finish_reason
    if finish is not None and finish not in FINISH:
        raise MartletError(f"vLLM ended the request with {finish!r}", why=str(completion))
    return Step(ids, logprobs, FINISH.get(finish) if finish else None, prompt_logprobs)


def _prompt_logprobs(
    prompt: Sequence[int], entries: Sequence[Mapping[int, Any] | None] | None, k: int
) -> list[TokenLogprob | None]:
    out: list[TokenLogprob | None] = [None]
    for token, position in zip(prompt[1:], list(entries or [None])[1:], strict=True):
        out.append(token_logprob(token, position, k) if position else None)
    return out
