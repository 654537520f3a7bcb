"""Bad rows: the problem a converter finds, the error users see, and the skip report."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from martlet.errors import MartletError

log = logging.getLogger("martlet.data")

SKIP_HINT = "fix the row, map its columns with --columns, or pass --on-bad-rows skip to skip it"


class RowProblem(ValueError):
    """Raised by the pure converters: what is wrong with one row, without where it is.

    ``reason`` is a short, stable label used to group skipped rows ("malformed JSON",
    "empty assistant turn", ...); ``detail`` says exactly what was found.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class BadRowError(MartletError):
    """A row of a dataset cannot be used; the message names the file, the line and the problem."""

    def __init__(self, where: str, problem: RowProblem) -> None:
        self.where = where
        self.reason = problem.reason
        self.detail = problem.detail
        super().__init__(
            f"{where}: {problem.reason}",
            why=problem.detail or None,
            fix=SKIP_HINT,
            cause=problem,
        )


class DataError(MartletError):
    """A dataset cannot be read at all (missing file, unreachable hub, unreadable file)."""


class EmptyDatasetError(DataError):
    """A dataset gives no rows: its files are empty, every row was skipped as bad, or what was
    selected of it (a subset, a split, a preprocessor's filter) keeps none.

    Attributes:
        source: the dataset as the user named it (a path, a name, a hub id).
        rows: raw rows read from it.
        report: the rows skipped as bad, by reason.
    """

    def __init__(
        self, source: str, *, rows: int, report: BadRowReport, empty_why: str | None = None
    ) -> None:
        self.source = source
        self.rows = rows
        self.report = report
        noun = "row" if rows == 1 else "rows"
        if rows == 0:
            super().__init__(
                f"dataset {source!r} has no rows",
                why=empty_why or "reading it gave no rows",
                fix="add rows to it, or point --dataset at data that has some",
            )
        elif report.skipped >= rows:
            super().__init__(
                f"dataset {source!r}: {rows} {noun}, all skipped",
                why=f"every row is bad: {report.reasons()}",
                fix="fix the rows, map their columns with --columns, or force their format "
                "with --dataset-format",
            )
        else:
            dropped = rows - report.skipped
            why = f"{dropped} left out by the dataset's preprocessor (nothing in them to use)"
            if report.skipped:
                why += f"; {report.skipped} skipped as bad: {report.reasons()}"
            super().__init__(
                f"dataset {source!r}: {rows} {noun}, none kept",
                why=why,
                fix="choose another subset or split of it, or check its options",
            )


@dataclass
class BadRowReport:
    """The rows skipped under ``on_bad_rows="skip"``, grouped by reason.

    Attributes:
        counts: reason -> number of rows skipped for it.
        examples: reason -> up to three ``"where: detail"`` strings.
    """

    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def skipped(self) -> int:
        """How many rows were skipped."""
        return sum(self.counts.values())

    def add(self, where: str, problem: RowProblem) -> None:
        self.counts[problem.reason] += 1
        shown = self.examples.setdefault(problem.reason, [])
        if len(shown) < 3:
            shown.append(f"{where}: {problem.detail}" if problem.detail else where)

    def merge(self, other: BadRowReport) -> None:
        self.counts.update(other.counts)
        for reason, shown in other.examples.items():
            mine = self.examples.setdefault(reason, [])
            mine.extend(shown[: max(0, 3 - len(mine))])

    def reasons(self) -> str:
        """The reasons counted, most frequent first, each with its first example:
        ``3 malformed JSON (e.g. x.jsonl, line 2: ...); 1 empty text (e.g. ...)``."""
        return "; ".join(
            f"{n} {reason} (e.g. {self.examples[reason][0]})"
            for reason, n in self.counts.most_common()
        )

    def summary(self) -> str:
        """One line per reason: ``skipped 3 bad rows: 2 malformed JSON (x.jsonl, line 4; ...)``."""
        if not self.skipped:
            return "no bad rows"
        noun = "row" if self.skipped == 1 else "rows"
        return f"skipped {self.skipped} bad {noun}: {self.reasons()}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "skipped": self.skipped,
            "by_reason": dict(self.counts.most_common()),
            "examples": {k: list(v) for k, v in self.examples.items()},
        }

    def log(self, what: str) -> None:
        """Log the summary (a warning) when rows were skipped."""
        if self.skipped:
            log.warning("%s: %s", what, self.summary())
