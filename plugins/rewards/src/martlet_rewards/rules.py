"""Rewards computed from the text alone: ``accuracy``, ``format``, ``repetition``, and the
length-shaped ``soft_overlong`` and ``cosine`` (ms-swift's built-in ORMs, TRL's recipes).

Each is built as ``cls(**options)`` (plus the run's ``max_completion_length`` and ``device``,
used or ignored) and called as ``reward(prompts=..., completions=..., completion_ids=...,
**columns)``; completions may be texts or TRL's lists of messages.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from martlet.errors import ConfigError, MartletError, MissingDependencyError
from martlet.rewards import text_of

from martlet_rewards import answers
from martlet_rewards.options import THINK_ANSWER

REFERENCE_COLUMNS = ("solution", "answer")


class Accuracy:
    """1.0 when the completion's final answer is the reference answer, else 0.0; None where the
    row has no reference (or, comparing as numbers, one that is not a number).

    The reference is the ``solution`` column (ms-swift's and TRL's), else ``answer``, or
    ``--accuracy-column``. The completion's answer is its ``<answer>`` tag, else its last
    ``\\boxed{}``, else — for a numeric reference — its last number.
    """

    def __init__(
        self,
        *,
        accuracy_column: str | None = None,
        accuracy_match: str = "auto",
        accuracy_tolerance: float = 1e-6,
        **_: Any,
    ) -> None:
        self.column = accuracy_column
        self.match = accuracy_match
        self.tolerance = accuracy_tolerance
        self.columns = (accuracy_column,) if accuracy_column else ("|".join(REFERENCE_COLUMNS),)
        if accuracy_match == "math_verify" and not answers.has_math_verify():
            raise MissingDependencyError(
                "--accuracy-match math_verify needs the math_verify package, which is not "
                "installed",
                fix="pip install math-verify, or use --accuracy-match auto",
            )

    def references(self, columns: Mapping[str, Any], n: int) -> list[Any]:
        """The reference answer of each of ``n`` completions, from the dataset columns."""
        names = (self.column,) if self.column else REFERENCE_COLUMNS
        for name in names:
            if name in columns and columns[name] is not None:
                values = columns[name]
                if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
                    values = [values] * n
                if len(values) != n:
                    raise MartletError(
                        f"the column {name!r} has {len(values)} values for {n} completions",
                        fix="pass one value per completion",
                    )
                return list(values)
        raise MartletError(
            f"the accuracy reward got no {' or '.join(repr(n) for n in names)} column",
            why="it compares each completion with the reference answer in that column",
            fix="use rows with a 'solution' (or 'answer') column, or name it with "
            "--accuracy-column",
        )

    def __call__(
        self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any
    ) -> list[float | None]:
        refs = self.references(kwargs, len(completions))
        return [self.score(text_of(c), r) for c, r in zip(completions, refs, strict=True)]

    def score(self, text: str, reference: Any) -> float | None:
        """The score of one completion ``text`` against its ``reference`` (raw column value)."""
        gold = answers.reference(reference)
        if gold is None:
            return None
        given = answers.extracted(text)
        gold_number = answers.to_number(gold) if self.match != "text" else None
        if gold_number is not None and self.match in ("auto", "numeric"):
            number = answers.to_number(given)
            if number is None:
                number = answers.to_number(
                    answers.last_number(given if given is not None else text)
                )
            if number is None:
                return 0.0
            return float(answers.same_number(number, gold_number, self.tolerance))
        if self.match == "numeric":
            return None  # the reference is not a number: this comparison does not apply
        if self.match == "math_verify" or (self.match == "auto" and answers.has_math_verify()):
            return answers.math_verified(gold, given if given is not None else text)
        answer = given if given is not None else text
        return float(answers.normalized(answer) == answers.normalized(gold))


class Format:
    """1.0 when the completion matches ``--format-pattern`` from its start (``re.match``, dot
    matching newlines), else 0.0. The default is ms-swift's: ``<think>...</think>`` then
    ``<answer>...</answer>`` and nothing after."""

    def __init__(self, *, format_pattern: str = THINK_ANSWER, **_: Any) -> None:
        try:
            self.pattern = re.compile(format_pattern, re.DOTALL | re.MULTILINE)
        except re.error as exc:
            raise ConfigError(
                f"--format-pattern {format_pattern!r} is not a regular expression", why=str(exc)
            ) from None

    def __call__(
        self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any
    ) -> list[float | None]:
        return [1.0 if self.pattern.match(text_of(c)) else 0.0 for c in completions]


class Repetition:
    """``(1 - distinct n-grams / n-grams) * --repetition-max-penalty`` over the completion's
    lower-cased words (ms-swift's ``repetition``; 0 for fewer words than n)."""

    def __init__(
        self, *, repetition_n_grams: int = 3, repetition_max_penalty: float = -1.0, **_: Any
    ) -> None:
        self.n = repetition_n_grams
        self.max_penalty = repetition_max_penalty

    def __call__(
        self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any
    ) -> list[float | None]:
        out: list[float | None] = []
        for completion in completions:
            words = text_of(completion).lower().split()
            if len(words) < self.n:
                out.append(0.0)
                continue
            grams = list(zip(*[words[i:] for i in range(self.n)], strict=False))
            scaling = 1 - len(set(grams)) / len(grams)
            out.append(scaling * self.max_penalty if scaling else 0.0)
        return out


def token_lengths(kwargs: Mapping[str, Any], n: int, reward: str) -> list[int]:
    """The length in tokens of each of ``n`` completions, from ``completion_ids``."""
    ids = kwargs.get("completion_ids")
    if ids is None:
        raise MartletError(
            f"the {reward} reward needs completion_ids (each completion's token ids)",
            why="it penalises length in tokens; the trainer passes them with the completions",
            fix="call it with completion_ids=[[...], ...], one list of token ids per completion",
        )
    lengths = [len(row) for row in ids]
    if len(lengths) != n:
        raise MartletError(
            f"completion_ids has {len(lengths)} rows for {n} completions",
            fix="pass one list of token ids per completion",
        )
    return lengths


def _length_limit(value: int | None, run_value: int | None, flag: str, reward: str) -> int:
    limit = value if value is not None else run_value
    if limit is None:
        raise ConfigError(
            f"the {reward} reward needs {flag}",
            why="the run gives no --max-completion-length to default to",
            fix=f"pass {flag} TOKENS (e.g. {flag} 512)",
        )
    return int(limit)


class SoftOverlong:
    """DAPO's soft overlong punishment (ms-swift's ``soft_overlong``): 0 up to ``L_max -
    L_cache`` tokens, then falling linearly to -1 at ``L_max``; -1 beyond (DAPO's Eq. 13)."""

    def __init__(
        self,
        *,
        soft_max_length: int | None = None,
        soft_cache_length: int | None = None,
        max_completion_length: int | None = None,
        **_: Any,
    ) -> None:
        self.max_length = _length_limit(
            soft_max_length, max_completion_length, "--soft-max-length", "soft_overlong"
        )
        self.cache_length = (
            soft_cache_length if soft_cache_length is not None else max(1, self.max_length // 4)
        )
        if self.cache_length >= self.max_length:
            raise ConfigError(
                f"--soft-cache-length ({self.cache_length}) must be less than the maximum "
                f"length ({self.max_length})",
                fix="e.g. --soft-max-length 512 --soft-cache-length 128",
            )

    def __call__(
        self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any
    ) -> list[float | None]:
        expected = self.max_length - self.cache_length
        return [
            max(-1.0, min(0.0, (expected - length) / self.cache_length))
            for length in token_lengths(kwargs, len(completions), "soft_overlong")
        ]


class Cosine:
    """Correctness scaled by length on a cosine schedule (ms-swift's ``cosine``, from
    "Demystifying Long Chain-of-Thought Reasoning"): a correct answer earns from
    ``--cosine-min-len-value-correct`` (length 0) down to ``--cosine-max-len-value-correct``
    (``--cosine-max-len`` tokens), a wrong one from ``--cosine-min-len-value-wrong`` up to
    ``--cosine-max-len-value-wrong``; longer completions count as ``--cosine-max-len``.
    Correctness is the ``accuracy`` reward's with its defaults; None where it does not apply."""

    def __init__(
        self,
        *,
        cosine_min_len_value_wrong: float = -0.5,
        cosine_max_len_value_wrong: float = 0.0,
        cosine_min_len_value_correct: float = 1.0,
        cosine_max_len_value_correct: float = 0.5,
        cosine_max_len: int | None = None,
        max_completion_length: int | None = None,
        **_: Any,
    ) -> None:
        self.wrong = (cosine_min_len_value_wrong, cosine_max_len_value_wrong)
        self.correct = (cosine_min_len_value_correct, cosine_max_len_value_correct)
        self.max_len = _length_limit(
            cosine_max_len, max_completion_length, "--cosine-max-len", "cosine"
        )
        self.accuracy = Accuracy()
        self.columns = self.accuracy.columns

    def __call__(
        self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any
    ) -> list[float | None]:
        correct = self.accuracy(prompts, completions, **kwargs)
        lengths = token_lengths(kwargs, len(completions), "cosine")
        out: list[float | None] = []
        for acc, length in zip(correct, lengths, strict=True):
            if acc is None:
                out.append(None)
                continue
            at_zero, at_max = self.correct if acc >= 1.0 else self.wrong
            t = min(length, self.max_len)
            out.append(at_max + (at_zero - at_max) * (1 + math.cos(t * math.pi / self.max_len)) / 2)
        return out
