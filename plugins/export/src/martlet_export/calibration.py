"""Calibration rows for export-time quantizers (GPTQ, AWQ): Martlet datasets encoded with the
model's own chat template, read only when a quantizer asks for them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from martlet.errors import ConfigError


def calibration_rows(
    specs: Sequence[str], tokenizer: Any, *, max_length: int = 512, limit: int | None = None
) -> Callable[[int], list[list[int]]]:
    """``take(n)``: up to ``n`` rows (and never more than ``limit``, ``--quant-n-samples``) of
    token ids from the datasets ``specs`` (in order), each
    a chat row encoded with ``tokenizer``'s chat template (a text row: its text), cut to
    ``max_length`` tokens; rows of fewer than two tokens are passed over.

    Raises (from ``take``):
        ConfigError: the datasets hold no usable row.
    """

    def take(n: int) -> list[list[int]]:
        import martlet

        if limit is not None:
            n = min(n, limit)
        template = martlet.load_template(tokenizer, max_length=max_length)
        out: list[list[int]] = []
        for spec in specs:
            for row in martlet.load_dataset(spec):
                if len(out) >= n:
                    return out
                ids = _encode(row, template, tokenizer)[:max_length]
                if len(ids) >= 2:
                    out.append(ids)
        if not out:
            raise ConfigError(
                f"no calibration rows in {', '.join(specs)}",
                why="the quantizer needs rows of text to calibrate on, and every row was "
                "empty or unreadable",
                fix="pass --dataset with chat or text rows",
            )
        return out

    return take


def _encode(row: Any, template: Any, tokenizer: Any) -> list[int]:
    if isinstance(row, dict) and row.get("messages"):
        return list(template.encode(row["messages"])["input_ids"])
    text = row.get("text") if isinstance(row, dict) else str(row)
    return list(tokenizer(text or "", add_special_tokens=False)["input_ids"])
