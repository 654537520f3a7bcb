"""Text from token ids as an engine emits them: the new text of each step, stop strings, and
each token's own text and bytes (for log-probabilities).

An engine emits token ids (:mod:`martlet.generation`); what the client reads is text, and a
token is not always a whole character (byte-level BPE splits one Chinese character over two or
three tokens) nor decoded alone the way it decodes in context (SentencePiece's leading
spaces). :class:`Detokenizer` decodes a short window of ids and releases only text that can no
longer change; :class:`StopStrings` holds back text that may still become a stop string and
cuts the answer where one appears.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any

#: prompt ids decoded before the first new token, so it decodes as it does in context
CONTEXT = 5
_REPLACEMENT = "\ufffd"


class Detokenizer:
    """The text of a growing list of token ids, piece by piece.

    ``add(ids)`` returns the text the new ids complete; ``flush()`` the rest at the end (a
    character still incomplete included, as a replacement character). The pieces of one
    answer concatenate to ``tokenizer.decode(ids, skip_special_tokens=True)``.
    """

    def __init__(self, tokenizer: Any, prompt_ids: Sequence[int] = ()) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = [int(t) for t in list(prompt_ids)[-CONTEXT:]]
        self._prefix = 0  # decoding starts here (some context before the unreleased ids)
        self._read = len(self.ids)  # ids before this are released

    def _decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(
            list(ids), skip_special_tokens=True, clean_up_tokenization_spaces=False
        )

    def add(self, ids: Sequence[int]) -> str:
        self.ids.extend(int(t) for t in ids)
        before = self._decode(self.ids[self._prefix : self._read])
        now = self._decode(self.ids[self._prefix :])
        if len(now) > len(before) and not now.endswith(_REPLACEMENT):
            self._prefix, self._read = self._read, len(self.ids)
            return now[len(before) :]
        return ""

    def flush(self) -> str:
        before = self._decode(self.ids[self._prefix : self._read])
        now = self._decode(self.ids[self._prefix :])
        self._prefix = self._read = len(self.ids)
        return now[len(before) :]


class StopStrings:
    """Finds the first of ``stops`` in a stream of text pieces.

    ``feed(piece)`` returns ``(text, stopped)``: the text that can be released (never the
    start of a possible stop string) and whether a stop string appeared, in which case
    ``text`` ends where it began and nothing more may be fed. A stop string found is not final
    while a longer one that would begin earlier may still complete (``["a", "XaX"]`` on
    ``"XXa"``): the text from that earlier start is held until the next pieces decide.
    ``flush()`` ends the stream: the same pair for what was held back.
    """

    def __init__(self, stops: Sequence[str] = ()) -> None:
        self.stops = [s for s in stops if s]
        self._held = ""

    def feed(self, piece: str) -> tuple[str, bool]:
        text = self._held + piece
        self._held = ""
        if not self.stops:
            return text, False
        found = _first(text, self.stops)
        keep = max(_overlap(text, s) for s in self.stops)
        pending = len(text) - keep  # where a stop string may begin that has not ended yet
        if found is not None and found <= pending:
            return text[:found], True
        self._held = text[pending:]
        return text[:pending], False

    def flush(self) -> tuple[str, bool]:
        text, self._held = self._held, ""
        found = _first(text, self.stops)
        return (text, False) if found is None else (text[:found], True)


def _first(text: str, stops: Sequence[str]) -> int | None:
    """Where the first of ``stops`` begins in ``text`` (None: none of them is there)."""
    found = [i for s in stops if (i := text.find(s)) >= 0]
    return min(found) if found else None


def _overlap(text: str, stop: str) -> int:
    """The length of the longest end of ``text`` that begins ``stop`` (shorter than it)."""
    for k in range(min(len(stop) - 1, len(text)), 0, -1):
        if text.endswith(stop[:k]):
            return k
    return 0


class TokenTexts:
    """Each token's own text and bytes, as log-probabilities show them (cached).

    The text is the token decoded alone, special tokens included; a token that is only part of
    a character decodes to a replacement character, and its ``bytes`` are then its raw bytes
    (byte-level BPE, SentencePiece's byte tokens) so a client can join them.
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self._cache: dict[int, tuple[str, list[int]]] = {}

    def __call__(self, token_id: int) -> tuple[str, list[int]]:
        found = self._cache.get(token_id)
        if found is None:
            found = self._cache[token_id] = self._make(token_id)
        return found

    def text(self, token_id: int) -> str:
        return self(token_id)[0]

    def _make(self, token_id: int) -> tuple[str, list[int]]:
        text = self.tokenizer.decode(
            [token_id], skip_special_tokens=False, clean_up_tokenization_spaces=False
        )
        if _REPLACEMENT not in text:
            return text, list(text.encode("utf-8"))
        piece = self.tokenizer.convert_ids_to_tokens(token_id)
        if isinstance(piece, str):
            decoder = _byte_decoder()
            if piece and all(c in decoder for c in piece):
                return text, [decoder[c] for c in piece]
            if match := re.fullmatch(r"<0x([0-9A-Fa-f]{2})>", piece):
                return text, [int(match.group(1), 16)]
        return text, list(text.encode("utf-8"))


@functools.cache
def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet, character -> byte (the inverse of ``bytes_to_unicode``)."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}
