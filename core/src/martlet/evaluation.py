"""What an eval task asks of a model, and what it gets back (:class:`martlet.interfaces.EvalTask`).

A task turns a document into requests. Each request carries the conversation that leads to
the answer — few-shot examples as user/assistant turns, then the question as the last user
turn (:func:`turns`) — and ``martlet eval`` renders it the way the run asks: as plain text
(turns joined by blank lines, an answer one space after its question, the way
lm-evaluation-harness builds its few-shot prompts) or through the model's chat template
(``--apply-chat-template``). Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Message = Mapping[str, Any]


@dataclass(frozen=True)
class Loglikelihood:
    """Score ``continuation`` after the conversation ``turns`` (it ends with a user turn).

    Rendered as plain text, the continuation follows the prompt after one space (``" A"``);
    through a chat template, it is the start of the assistant's answer (``"A"``)."""

    turns: tuple[Message, ...]
    continuation: str


@dataclass(frozen=True)
class Generate:
    """Generate the answer to ``turns`` (greedy), stopping at any of ``until`` (the stop
    text is not part of the answer) or after ``max_tokens`` tokens."""

    turns: tuple[Message, ...]
    until: tuple[str, ...] = ()
    max_tokens: int = 256


@dataclass(frozen=True)
class Scored:
    """The answer to a :class:`Loglikelihood`: the continuation's summed log-probability,
    whether greedy decoding would have produced it, and its length in tokens."""

    logprob: float
    greedy: bool
    tokens: int


def turns(question: str, fewshot: Sequence[tuple[str, str]] = ()) -> tuple[Message, ...]:
    """The conversation of a request: each ``(question, answer)`` of ``fewshot`` as a user
    and an assistant turn, then ``question`` as the last user turn."""
    out: list[Message] = []
    for asked, answered in fewshot:
        out.append({"role": "user", "content": asked})
        out.append({"role": "assistant", "content": answered})
    out.append({"role": "user", "content": question})
    return tuple(out)


def plain_prompt(conversation: Sequence[Message]) -> str:
    """``conversation`` as plain text: each answered question as ``question + " " + answer``,
    the parts joined by blank lines, ending with the last question (a system turn, if any,
    first)."""
    parts: list[str] = []
    pending: str | None = None
    for message in conversation:
        role, content = message.get("role"), str(message.get("content") or "")
        if role == "assistant":
            parts.append(f"{pending or ''} {content}" if pending is not None else content)
            pending = None
        else:
            if pending is not None:
                parts.append(pending)
            pending = content
    if pending is not None:
        parts.append(pending)
    return "\n\n".join(parts)


__all__ = ["Generate", "Loglikelihood", "Message", "Scored", "plain_prompt", "turns"]
