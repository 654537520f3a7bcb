"""Answer extraction and aggregation: plain functions, no model."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

_NUMBER = r"-?[\d,]*\.?\d+"
# what a worked answer ends with, most explicit first
_FINAL = (
    re.compile(rf"[Tt]he (?:final )?answer is:?\s*\$?({_NUMBER})"),
    re.compile(rf"####\s*\$?({_NUMBER})"),
    re.compile(rf"\\boxed\{{\s*\$?({_NUMBER})\s*\}}"),
)
_ANY_NUMBER = re.compile(_NUMBER)


def extract_answer(text: str, pattern: str | None = None) -> str | None:
    """The final answer in a generated ``text``: the first group of ``pattern`` when given;
    else the number after "The answer is", "####" or inside ``\\boxed{}``; else the last
    number in the text; None when there is none."""
    if pattern is not None:
        found = re.search(pattern, text)
        return found.group(1).strip() if found else None
    for rule in _FINAL:
        found = rule.search(text)
        if found:
            return found.group(1)
    numbers = _ANY_NUMBER.findall(text)
    return numbers[-1] if numbers else None


def normalize(answer: Any) -> str:
    """An answer compared as text: numbers without thousands separators, a trailing ``.``
    or a zero fraction (``1,000.0`` -> ``1000``); other text stripped and lower-cased."""
    text = str(answer).strip().rstrip(".").replace(",", "").lstrip("$")
    try:
        value = float(text)
    except ValueError:
        return text.lower()
    if math.isfinite(value) and value == int(value):
        return str(int(value))
    return repr(value)


def gold_index(doc: Mapping[str, Any], choices: Sequence[str], field: str = "answer") -> int:
    """The index of ``doc[field]`` among ``choices``: a letter, an index, or the text of a
    choice."""
    from martlet.errors import MartletError

    value = doc.get(field)
    if isinstance(value, bool):
        raise MartletError(f"the answer {value!r} names no choice")
    if isinstance(value, int) and 0 <= value < len(choices):
        return value
    text = str(value).strip()
    if len(text) == 1 and text.upper() in LETTERS[: len(choices)]:
        return LETTERS.index(text.upper())
    if text.isdigit() and int(text) < len(choices):
        return int(text)
    for i, choice in enumerate(choices):
        if str(choice).strip() == text:
            return i
    raise MartletError(
        f"the answer {value!r} is none of the {len(choices)} choices",
        why="a multiple-choice answer is a letter, an index or the text of a choice",
        fix=f"check the {field!r} field of the data",
    )


def argmax(values: Sequence[float]) -> int:
    """The index of the largest value (the first of equals, as lm-evaluation-harness)."""
    best = 0
    for i, value in enumerate(values):
        if value > values[best]:
            best = i
    return best


def aggregate(
    metrics: Sequence[Mapping[str, float]], subjects: Sequence[str | None]
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """The task's mean of each metric over its documents (each subject weighted by its size)
    and each subject's means with its count ``n``; subjects are empty when no document
    names one."""
    total: dict[str, float] = {}
    for name in metrics[0] if metrics else ():
        total[name] = sum(m[name] for m in metrics) / len(metrics)
    total["n"] = len(metrics)
    groups: dict[str, list[Mapping[str, float]]] = {}
    for m, subject in zip(metrics, subjects, strict=True):
        if subject:
            groups.setdefault(str(subject), []).append(m)
    per_subject = {}
    for subject in sorted(groups):
        rows = groups[subject]
        per_subject[subject] = {name: sum(r[name] for r in rows) / len(rows) for name in rows[0]}
        per_subject[subject]["n"] = len(rows)
    return total, per_subject
