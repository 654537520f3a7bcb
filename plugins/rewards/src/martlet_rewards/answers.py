"""Final answers read from texts and compared: ``<answer>`` tags, ``\\boxed{...}``, the last
number; numbers compared as numbers (``1,000`` = ``1000.0``, ``3/4`` = ``\\frac{3}{4}`` =
``0.75``), other answers as normalised text or through ``math_verify`` where it is installed."""

from __future__ import annotations

import importlib.util
import math
import re
from fractions import Fraction
from typing import Any

_TAG = re.compile(r"<answer>(.*?)</answer>", re.S)
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_TEXT_CMD = re.compile(r"\\(?:text|textbf|mathrm|mbox)\{([^{}]*)\}")
_FRAC = re.compile(r"^([-+]?)\\[dt]?frac\s*\{([^{}]+)\}\s*\{([^{}]+)\}$")
_FRAC_SHORT = re.compile(r"^([-+]?)\\[dt]?frac(\d)(\d)$")
_SLASH = re.compile(r"^([-+]?[\d.,]+)\s*/\s*([-+]?[\d.,]+)$")
_PLAIN = re.compile(r"^[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?(?:[eE][-+]?\d+)?$|^[-+]?\.\d+$")
#: a number in running text: a fraction command, a/b, or a decimal with thousands separators
_IN_TEXT = re.compile(
    r"[-+]?\\[dt]?frac\s*\{[^{}]+\}\s*\{[^{}]+\}"
    r"|[-+]?\d+(?:,\d{3})*(?:\.\d+)?(?:\s*/\s*\d+(?:\.\d+)?)?(?:[eE][-+]?\d+)?"
    r"|[-+]?\.\d+"
)


def tagged(text: str) -> str | None:
    """The content of the last ``<answer>...</answer>`` in ``text``, or None."""
    found = _TAG.findall(text)
    return found[-1].strip() if found else None


def boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) in ``text``, braces
    balanced, or None."""
    last = None
    for match in _BOXED.finditer(text):
        depth, start = 1, match.end()
        for i in range(start, len(text)):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    last = text[start:i].strip()
                    break
    return last


def last_number(text: str) -> str | None:
    """The last number written in ``text`` (``1,000``, ``-2.5``, ``3/4``, ``\\frac{1}{2}``)."""
    found = _IN_TEXT.findall(text)
    return found[-1] if found else None


def reference(value: object) -> str | None:
    """A reference answer as text: the content of its ``<answer>`` tag, what follows its last
    ``####`` (GSM8K), its ``\\boxed{}``, or the whole text; None when there is none."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return repr(value)
    text = str(value).strip()
    if not text:
        return None
    inner = tagged(text)
    if inner is not None:
        text = inner
    elif "####" in text:
        text = text.rsplit("####", 1)[1].strip()
    found = boxed(text)
    return (found if found is not None else text) or None


def extracted(text: str) -> str | None:
    """The answer a completion gives: the content of its last ``<answer>`` tag (the
    ``\\boxed{}`` inside it, if any), else its last ``\\boxed{}``; None when it marks none."""
    inner = tagged(text)
    if inner is not None:
        found = boxed(inner)
        return found if found is not None else inner
    return boxed(text)


def _clean(text: str) -> str:
    text = _TEXT_CMD.sub(r"\1", text)
    for junk in ("\\!", "\\,", "\\;", "\\ ", "\\left", "\\right", "$", "\\$"):
        text = text.replace(junk, "")
    return text.replace("\\%", "%").strip().rstrip(".").strip()


def to_number(text: str | None) -> float | None:
    """``text`` read as a number, or None: ``1,000`` and ``$1,000.00`` (1000), ``1e3``, ``3/4``
    and ``\\frac{3}{4}`` (0.75), ``75%`` (75), a trailing period or ``\\text{...}`` ignored."""
    if text is None:
        return None
    s = _clean(text)
    if s.endswith("%"):
        s = s[:-1].strip()
    if not s:
        return None
    for pattern in (_FRAC, _FRAC_SHORT):
        match = pattern.match(s)
        if match:
            sign, num, den = match.groups()
            top, bottom = to_number(num), to_number(den)
            if top is None or not bottom:
                return None
            return (-1 if sign == "-" else 1) * top / bottom
    match = _SLASH.match(s)
    if match:
        top, bottom = to_number(match.group(1)), to_number(match.group(2))
        if top is None or not bottom:
            return None
        return top / bottom
    if _PLAIN.match(s):
        try:
            value = float(Fraction(s.replace(",", ""))) if "e" not in s.lower() else float(s)
        except (ValueError, ZeroDivisionError):
            return None
        return value if math.isfinite(value) else None
    return None


def same_number(a: float, b: float, tolerance: float) -> bool:
    return math.isclose(a, b, rel_tol=tolerance, abs_tol=tolerance * 1e-3)


def normalized(text: str) -> str:
    """Text compared as an answer: LaTeX spacing, ``\\text{}``, dollars and case ignored,
    whitespace removed."""
    return re.sub(r"\s+", "", _clean(text)).lower()


def has_math_verify() -> bool:
    return importlib.util.find_spec("math_verify") is not None


def math_verified(gold: str, answer: str) -> float | None:
    """1.0 or 0.0 as ``math_verify`` compares them; None when it cannot read ``gold``. An
    extracted answer (``x^2``, no ``$`` around it) that math_verify finds nothing in is read
    again as inline LaTeX (``$x^2$``)."""
    from math_verify import parse, verify

    try:
        gold_parsed = _parsed(parse, gold)
    except Exception:  # noqa: BLE001 - an unreadable reference does not apply
        return None
    if not gold_parsed:
        return None
    try:
        return float(bool(verify(gold_parsed, _parsed(parse, answer))))
    except Exception:  # noqa: BLE001 - an unreadable answer is a wrong one
        return 0.0


def _parsed(parse: Any, text: str) -> Any:
    found = parse(text)
    if not found and "$" not in text:
        found = parse(f"${text}$")
    return found
