"""``martlet infer`` on a backend that only serves (vLLM, SGLang, LMDeploy): the interactive
chat, ``--query`` and ``--input`` read answers from the backend's serving engine, in-process,
through :class:`martlet_serve.api.InferEngine` — the same requests `martlet deploy` would
answer, without the HTTP server."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from martlet_serve.api import InferEngine, InferRequest, RequestConfig


@dataclass
class Answer:
    """One answer, as the in-process engines give it (``Completion``'s fields)."""

    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


class ServedGenerator:
    """``generate()`` and ``stream()`` over a serving engine (what ``martlet infer`` calls
    on an in-process engine such as martlet-engine-pt's ``PtEngine``)."""

    def __init__(self, engine: InferEngine) -> None:
        self.engine = engine

    def generate(self, requests: Sequence[Sequence[dict]], **generation: Any) -> list[Answer]:
        """One answer per conversation, decoded together."""
        answers = self.engine.infer(
            [InferRequest(messages=list(m)) for m in requests], request_config(generation)
        )
        out = []
        for response in answers:
            choice = response.choices[0]
            out.append(
                Answer(
                    text=choice.message.content or "",
                    finish_reason=choice.finish_reason,
                    prompt_tokens=response.usage.prompt_tokens,
                    completion_tokens=response.usage.completion_tokens,
                )
            )
        return out

    def stream(self, messages: Sequence[dict], **generation: Any) -> Iterator[str]:
        """The answer to one conversation, piece by piece as it is decoded."""
        config = request_config(generation, stream=True)
        (chunks,) = self.engine.infer([InferRequest(messages=list(messages))], config)
        for chunk in chunks:
            for choice in chunk.get("choices", []):
                piece = choice.get("delta", {}).get("content")
                if piece:
                    yield piece

    def close(self) -> None:
        self.engine.close()


def request_config(generation: dict[str, Any], *, stream: bool = False) -> RequestConfig:
    """``martlet infer``'s generation options as the request fields they mean."""
    temperature = generation.get("temperature")
    return RequestConfig(
        max_tokens=generation.get("max_new_tokens"),
        temperature=temperature,
        top_p=generation.get("top_p") if temperature else None,
        top_k=(generation.get("top_k") or None) if temperature else None,
        repetition_penalty=generation.get("repetition_penalty"),
        stop=list(generation.get("stop") or []) or None,
        seed=generation.get("seed"),
        stream=stream,
    )
