"""Several datasets at once, with their bad-row reports and formats merged (``martlet dataset``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

from martlet.errors import ConfigError

from martlet_data.errors import BadRowReport
from martlet_data.rows import Rows, RowStream


def load_datasets(specs: str | Sequence[str], **options: Any) -> Rows | RowStream:
    """Read each spec with :func:`martlet.load_dataset` and concatenate them in order.

    Args:
        specs: one spec or several (``NAME_OR_PATH[:subset][#N]``); ``#N`` applies per spec.
        options: the read options (:class:`~martlet_data.options.ReadOptions`), the same for
            every spec.

    Returns:
        :class:`~martlet_data.rows.Rows` (one list; its ``report`` merges the specs' bad-row
        reports and ``formats`` their format counts), or a
        :class:`~martlet_data.rows.RowStream` over all of them when ``streaming=True``.

    Raises:
        ConfigError: no spec given, or a bad option.
        MartletError: a spec cannot be read (see the sources).
    """
    import martlet

    spec_list = [specs] if isinstance(specs, str) else list(specs)
    if not spec_list:
        raise ConfigError("no dataset given", fix="pass --dataset NAME_OR_PATH (several allowed)")
    streaming = bool(options.get("streaming"))
    parts = [_rows(martlet.load_dataset(spec, **options), spec, streaming) for spec in spec_list]
    if len(parts) == 1:
        return parts[0]
    if options.get("streaming"):

        def make(report: BadRowReport, formats: Counter) -> Iterator[dict]:
            for part in parts:
                yield from part
                report.merge(part.report)
                formats.update(part.formats)

        return RowStream(make, ", ".join(spec_list), specs=tuple(spec_list))
    report, formats, rows = BadRowReport(), Counter(), []
    for part in parts:
        rows.extend(part)
        report.merge(part.report)
        formats.update(part.formats)
    return Rows(rows, report, formats, specs=tuple(spec_list))


def _rows(read: Any, spec: str, streaming: bool) -> Rows | RowStream:
    """What a source returned, as :class:`Rows` or a :class:`RowStream`: another plugin's
    source may return a plain list or iterable of canonical rows (the interface allows it)."""
    if isinstance(read, (Rows, RowStream)):
        return read
    if not streaming:
        return Rows(list(read), specs=(spec,))

    def make(report: BadRowReport, formats: Counter) -> Iterator[dict]:
        yield from read

    return RowStream(make, spec, specs=(spec,))
