"""Several datasets at once, and the train/validation rows of a command's :class:`DataOptions`."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

from martlet.errors import ConfigError

from martlet_data.errors import BadRowReport
from martlet_data.options import DataOptions
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


def load_train_val(options: DataOptions) -> tuple[Rows | RowStream, Rows | RowStream | None]:
    """The training rows and the validation rows (or None) of ``options``.

    * ``--val-dataset`` given: those rows validate.
    * else ``--split-dataset-ratio R`` > 0: ``R`` of the training rows (at least one) are held
      out, chosen with ``--data-seed``.
    * ``--dataset-shuffle`` (default on): the training rows are shuffled with ``--data-seed``
      (not when streaming: a stream is read in order).

    Raises:
        ConfigError: no ``--dataset``; a ratio with ``--streaming`` (a stream cannot be split
            without reading it whole: give ``--val-dataset``); a ratio that leaves no
            training row.
    """
    if not options.dataset:
        raise ConfigError("no --dataset given", fix="pass --dataset NAME_OR_PATH (several allowed)")
    read = options.read_options()
    train = load_datasets(options.dataset, **read)
    val = load_datasets(options.val_dataset, **read) if options.val_dataset else None
    if options.streaming:
        if val is None and options.split_dataset_ratio > 0:
            raise ConfigError(
                "--split-dataset-ratio cannot split a streamed dataset",
                why="holding out a fraction needs the whole dataset in memory",
                fix="give --val-dataset instead, or drop --streaming",
            )
        return train, val
    assert isinstance(train, Rows)
    rng = random.Random(options.data_seed)
    order = list(range(len(train)))
    if options.dataset_shuffle:
        rng.shuffle(order)
    if val is None and options.split_dataset_ratio > 0:
        n_val = max(1, round(len(train) * options.split_dataset_ratio))
        if n_val >= len(train):
            raise ConfigError(
                f"--split-dataset-ratio {options.split_dataset_ratio} leaves no training rows "
                f"out of {len(train)}",
                fix="lower the ratio or add rows",
            )
        held = order[:n_val] if options.dataset_shuffle else rng.sample(order, n_val)
        held_set = set(held)
        val = Rows([train[i] for i in sorted(held_set)], specs=train.specs)
        order = [i for i in order if i not in held_set]
    train = Rows([train[i] for i in order], train.report, train.formats, train.specs)
    return train, val
