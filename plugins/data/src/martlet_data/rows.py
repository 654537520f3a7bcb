"""From raw rows to canonical rows: conversion, the bad-row policy, ``#N`` selection, and the
two shapes a read returns — :class:`Rows` (a list) and :class:`RowStream` (lazy)."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from typing import Any

from martlet_data.errors import BadRowError, BadRowReport, EmptyDatasetError, RowProblem
from martlet_data.formats import apply_columns, to_canonical, to_prompt

#: the columns a row's conversation is made of (never carried as extra columns)
CONVERSATION_COLUMNS = ("messages", "conversations", "system", "history")

Preprocess = Callable[..., Any]


class Rows(list):
    """Canonical rows (a plain ``list`` of dicts) with what reading them found.

    Attributes:
        report: the :class:`~martlet_data.errors.BadRowReport` of skipped rows.
        formats: how many rows were read in each input format (``alpaca``, ``sharegpt``, ...).
        specs: the dataset specs the rows came from.
    """

    def __init__(
        self,
        rows: Iterable[dict] = (),
        report: BadRowReport | None = None,
        formats: Counter | None = None,
        specs: tuple[str, ...] = (),
    ) -> None:
        super().__init__(rows)
        self.report = report if report is not None else BadRowReport()
        self.formats = formats if formats is not None else Counter()
        self.specs = specs


class RowStream:
    """Canonical rows read lazily: iterating reads the source again from the start, one row at
    a time, so a file of any size streams in bounded memory.

    ``report`` and ``formats`` describe the most recent (or current) pass.
    ``take(n)`` gives a stream of at most ``n`` rows.

    A source that gives no rows raises :class:`~martlet_data.errors.EmptyDatasetError` when a
    pass reaches its end (a stream can only be found empty by reading it).
    """

    def __init__(
        self,
        make: Callable[[BadRowReport, Counter], Iterator[dict]],
        label: str,
        specs: tuple[str, ...] = (),
        limit: int | None = None,
    ) -> None:
        self._make = make
        self.label = label
        self.specs = specs
        self.limit = limit
        self.report = BadRowReport()
        self.formats: Counter = Counter()

    def __iter__(self) -> Iterator[dict]:
        self.report, self.formats = BadRowReport(), Counter()
        produced = 0
        log = True
        try:
            for row in self._make(self.report, self.formats):
                if self.limit is not None and produced >= self.limit:
                    return
                produced += 1
                yield row
        except EmptyDatasetError:
            log = False  # the error counts the skipped rows itself
            raise
        finally:
            if log:
                self.report.log(self.label)

    def take(self, n: int) -> RowStream:
        limit = n if self.limit is None else min(n, self.limit)
        return RowStream(self._make, self.label, self.specs, limit)

    def __repr__(self) -> str:
        return f"RowStream({self.label!r}, limit={self.limit})"


def canonical_rows(
    raw: Iterable[tuple[str, Any]],
    *,
    report: BadRowReport,
    formats: Counter,
    format: str | None = None,
    columns: Mapping[str, str] | None = None,
    keep: Collection[str] = (),
    preprocess: Preprocess | None = None,
    preprocess_options: Mapping[str, Any] | None = None,
    on_bad_rows: str = "error",
    trace: list[str] | None = None,
    prompts: bool = False,
    keep_columns: bool = False,
    source: str | None = None,
    empty_why: Callable[[], str] | None = None,
) -> Iterator[dict]:
    """Convert ``(where, raw row)`` pairs to canonical rows, lazily.

    A row that cannot be used raises :class:`BadRowError` (naming ``where``), or with
    ``on_bad_rows="skip"`` is counted in ``report`` and left out. ``formats`` counts the input
    format of each row produced; ``trace``, when given, gets each one appended in order.
    With ``prompts`` the rows are questions to answer (:func:`to_prompt`), not training rows.
    With ``keep_columns`` every other column of a row comes along too (a prompt's reference
    answer, a solution: what online RL's reward functions read), but those the conversation
    was built from (``messages``, ``conversations``, ``system``, ``history``).

    With ``source`` (the dataset as the user named it), reaching the end of ``raw`` without
    producing a row raises :class:`EmptyDatasetError` naming it: no raw rows at all (the reason
    is ``empty_why()``, asked only then), every row skipped (the reasons counted), or none kept
    by ``preprocess``.
    """
    convert = to_prompt if prompts else to_canonical
    options = dict(preprocess_options or {})
    keep = set(keep) | set(getattr(preprocess, "keep", ())) | set((columns or {}).values())
    read = kept = 0
    for where, row in raw:
        read += 1
        try:
            if isinstance(row, RowProblem):
                raise row
            row = apply_columns(row, columns)
            produced = preprocess(row, **options) if preprocess is not None else row
            items = produced if isinstance(produced, list) else [produced]
            for item in items:
                out, used = convert(item, format, keep=keep)
                if keep_columns:
                    for key, value in item.items():
                        if key not in out and key not in CONVERSATION_COLUMNS:
                            out[key] = value
                formats[used] += 1
                if trace is not None:
                    trace.append(used)
                kept += 1
                yield out
        except RowProblem as problem:
            if on_bad_rows != "skip":
                raise BadRowError(where, problem) from None
            report.add(where, problem)
    if source is not None and not kept:
        why = empty_why() if empty_why is not None and not read else None
        raise EmptyDatasetError(source, rows=read, report=report, empty_why=why)


def select(rows: list, count: int | None, seed: int) -> list:
    """``#N`` selection on a list of rows.

    * ``N`` smaller than the rows: ``N`` rows sampled without replacement by
      ``random.Random(seed)``, kept in their original order.
    * ``N`` equal: all rows.
    * ``N`` larger: every row ``N // len`` times, then a seeded sample of the remainder
      (ms-swift's upsampling), in order within each repetition.
    """
    if count is None or count == len(rows):
        return rows
    if not rows:
        return rows
    rng = random.Random(seed)
    if count < len(rows):
        picked = sorted(rng.sample(range(len(rows)), count))
        return [rows[i] for i in picked]
    repeats, remainder = divmod(count, len(rows))
    picked = sorted(rng.sample(range(len(rows)), remainder))
    return rows * repeats + [rows[i] for i in picked]
