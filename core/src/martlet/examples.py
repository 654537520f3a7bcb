"""What passes between the data stages: canonical rows and encoded examples.

Dataset sources (:class:`martlet.interfaces.DatasetSource`) return **canonical rows**: dicts with
``messages`` (a conversation), plus ``rejected_response`` or ``rejected_messages`` for a
preference pair (and an optional ``margin``), ``label`` (bool) for a KTO row, ``tools`` where
the row declares tools; pre-training rows are ``{"text": ...}`` (:func:`row_kind`).

A chat template (:class:`martlet.interfaces.Template`) turns a conversation into an **encoded
example**: ``input_ids``, ``attention_mask`` and ``labels`` — lists of ints of one length, with
:data:`IGNORE_INDEX` where nothing is learned. :func:`encode_rows` encodes canonical rows of every
kind that way (preference rows add ``rejected_input_ids``, ``rejected_attention_mask``,
``rejected_labels`` and ``margin``; KTO rows keep ``label``; text rows are tokenized whole) and
counts what it had to cut or leave out. Training commands batch encoded examples; ``martlet
dataset info`` counts their tokens. Pure Python: no torch.

    template = martlet.load_template(tokenizer, max_length=2048)
    encoded = encode_rows(rows, template)        # EncodedRows, with .stats
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from martlet.errors import ConfigError, MartletError

log = logging.getLogger("martlet.data")

#: the label of a token nothing is learned from (PyTorch's cross-entropy ``ignore_index``)
IGNORE_INDEX = -100

#: what a canonical row can be (:func:`row_kind`)
ROW_KINDS = ("messages", "preference", "kto", "text")


def row_kind(row: Mapping[str, Any]) -> str:
    """The kind of a canonical row: ``preference``, ``kto``, ``text`` or ``messages``."""
    if "rejected_response" in row or "rejected_messages" in row:
        return "preference"
    if "label" in row and "messages" in row:
        return "kto"
    if "text" in row and "messages" not in row:
        return "text"
    return "messages"


def rejected_conversation(row: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The rejected side of a canonical preference row as a full conversation."""
    if "rejected_messages" in row:
        return list(row["rejected_messages"])
    if "rejected_response" not in row:
        raise KeyError("not a preference row: no rejected_response or rejected_messages")
    messages = list(row["messages"])
    return [*messages[:-1], {"role": "assistant", "content": row["rejected_response"]}]


@dataclass
class EncodeStats:
    """What :func:`encode_rows` did.

    Attributes:
        rows: rows given.
        encoded: rows returned.
        truncated: rows the template cut to ``max_length`` (it reported ``truncated`` > 0).
        truncated_tokens: tokens cut from them in all.
        deleted: reason -> rows left out (``longer than max_length``: the template returned
            None, or an encoding longer than ``max_length``; ``no target tokens``: nothing was
            left to learn after truncation).
    """

    rows: int = 0
    encoded: int = 0
    truncated: int = 0
    truncated_tokens: int = 0
    deleted: Counter = field(default_factory=Counter)

    @property
    def deleted_rows(self) -> int:
        return sum(self.deleted.values())

    def summary(self) -> str:
        text = f"encoded {self.encoded} of {self.rows} rows"
        if self.truncated:
            text += f"; truncated {self.truncated} (cut {self.truncated_tokens} tokens)"
        if self.deleted:
            reasons = ", ".join(f"{n} {r}" for r, n in self.deleted.most_common())
            text += f"; deleted {self.deleted_rows} ({reasons})"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "encoded": self.encoded,
            "truncated": self.truncated,
            "truncated_tokens": self.truncated_tokens,
            "deleted": dict(self.deleted),
        }


class EncodedRows(list):
    """Encoded rows (a list of dicts) with :class:`EncodeStats` as ``stats``."""

    def __init__(self, rows: Iterable[dict] = (), stats: EncodeStats | None = None) -> None:
        super().__init__(rows)
        self.stats = stats or EncodeStats()


def _encode_messages(template: Any, messages: list, tools: Any) -> dict[str, Any] | None:
    if tools:
        return template.encode(messages, tools=tools)
    return template.encode(messages)


def _encode_text(text: str, tokenizer: Any, max_length: int | None) -> dict[str, Any]:
    ids = list(tokenizer(text, add_special_tokens=True)["input_ids"])
    eos = getattr(tokenizer, "eos_token_id", None)
    if eos is not None and (not ids or ids[-1] != eos):
        ids.append(eos)
    cut = 0
    if max_length is not None and len(ids) > max_length:
        cut = len(ids) - max_length
        ids = ids[:max_length]
    return {
        "input_ids": ids,
        "attention_mask": [1] * len(ids),
        "labels": list(ids),
        "truncated": cut,
    }


#: ``EncodeStats.deleted`` reason of the rows the chat template refused
UNRENDERABLE = "the template cannot render it"


def _unrenderable(exc: MartletError, number: int, row: Mapping[str, Any]) -> MartletError:
    first = next((m for m in row.get("messages") or [] if m.get("content")), {})
    text = str(first.get("content", ""))[:60]
    return MartletError(
        f"row {number} of the training data cannot be encoded: {exc.what}",
        why=(exc.why or "") + (f" (the row starts {text!r})" if text else ""),
        fix="fix or remove that row, choose another --template, or pass --on-bad-rows skip "
        "to leave such rows out (they are counted)",
        cause=exc,
    )


def encode_rows(
    rows: Iterable[Mapping[str, Any]],
    template: Any,
    *,
    tokenizer: Any = None,
    max_length: int | None = None,
    on_bad_rows: str = "error",
) -> EncodedRows:
    """Encode canonical rows for training.

    Args:
        rows: canonical rows (``messages`` rows, preference rows, KTO rows or ``text`` rows).
        template: an object with ``encode(messages) -> {"input_ids", "attention_mask",
            "labels"}`` or None for a row it deletes (martlet-hf's templates; they may add
            ``truncated``: tokens cut). A row's ``tools`` are passed as ``encode(..., tools=)``.
        tokenizer: for ``text`` rows (pretraining); default ``template.tokenizer``. Text rows
            get the EOS token appended, labels equal to the ids, and are cut to ``max_length``.
        max_length: rows still longer than this after encoding are deleted (a safety net for
            templates without a limit of their own).
        on_bad_rows: a row the chat template cannot render (roles it refuses, say) stops the
            encoding with an error naming the row (``"error"``), or is left out and counted
            (``"skip"``: ``deleted["the template cannot render it"]``).

    Returns:
        :class:`EncodedRows`: dicts with ``input_ids``, ``attention_mask`` and ``labels``
        (lists of ints); preference rows add ``rejected_input_ids``,
        ``rejected_attention_mask`` and ``rejected_labels`` (and ``margin`` where the row has
        one); KTO rows keep ``label``.
        ``.stats`` counts truncated and deleted rows (also logged).

    Raises:
        ConfigError: a text row and no tokenizer to encode it.
    """
    stats = EncodeStats()
    out: list[dict[str, Any]] = []
    for row in rows:
        stats.rows += 1
        kind = row_kind(row)
        if kind == "text":
            tok = tokenizer if tokenizer is not None else getattr(template, "tokenizer", None)
            if tok is None:
                raise ConfigError(
                    "cannot encode text rows: no tokenizer",
                    fix="pass tokenizer= to encode_rows (the template has none)",
                )
            encoded = _encode_text(row["text"], tok, max_length)
        else:
            try:
                encoded = _encode_messages(template, list(row["messages"]), row.get("tools"))
                rejected = None
                if encoded is not None and kind == "preference":
                    conversation = rejected_conversation(row)
                    rejected = _encode_messages(template, conversation, row.get("tools"))
            except MartletError as exc:
                if on_bad_rows == "skip":
                    stats.deleted[UNRENDERABLE] += 1
                    continue
                raise _unrenderable(exc, stats.rows, row) from exc
        if encoded is not None and kind == "preference":
            if rejected is None:
                encoded = None
            else:
                encoded = dict(encoded)
                encoded["truncated"] = int(encoded.get("truncated") or 0) + int(
                    rejected.get("truncated") or 0
                )
                for key in ("input_ids", "attention_mask", "labels"):
                    encoded[f"rejected_{key}"] = list(rejected[key])
        if encoded is None:
            stats.deleted["longer than max_length"] += 1
            continue
        encoded = dict(encoded)
        cut = int(encoded.pop("truncated", 0) or 0)
        longest = max(len(encoded["input_ids"]), len(encoded.get("rejected_input_ids", ())))
        if max_length is not None and longest > max_length:
            stats.deleted["longer than max_length"] += 1
            continue
        sides = [encoded["labels"]] + (
            [encoded["rejected_labels"]] if "rejected_labels" in encoded else []
        )
        if any(all(t == IGNORE_INDEX for t in labels) for labels in sides):
            stats.deleted["no target tokens"] += 1
            continue
        if cut:
            stats.truncated += 1
            stats.truncated_tokens += cut
        if kind == "kto":
            encoded["label"] = bool(row["label"])
        if kind == "preference" and row.get("margin") is not None:
            encoded["margin"] = float(row["margin"])
        out.append(encoded)
    stats.encoded = len(out)
    if stats.truncated or stats.deleted:
        log.warning("%s", stats.summary())
    else:
        log.info("%s", stats.summary())
    return EncodedRows(out, stats)
