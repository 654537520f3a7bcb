"""The rows a training command trains and validates on: its data options
(:class:`TrainDataOptions`) and :func:`load_train_val`.

Rows are read through the core (:func:`martlet.load_dataset`: whichever installed dataset
source reads each spec, or the one ``--dataset-source`` names) as canonical rows
(:mod:`martlet.examples`); nothing here knows which plugin provides the sources.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from martlet.config import option
from martlet.errors import ConfigError
from martlet.options import DatasetReadOptions


@dataclass(kw_only=True)
class TrainDataOptions(DatasetReadOptions):
    """Validation data, shuffling, lengths and packing.

    The data options of a training command (``martlet sft``, ``pt``, ``rlhf``): the core's
    :class:`~martlet.options.DatasetReadOptions` plus these."""

    val_dataset: list[str] = option(
        default_factory=list,
        help="Validation datasets, in the same syntax; none: split them off --dataset "
        "with --split-dataset-ratio.",
        metavar="SPEC",
    )
    split_dataset_ratio: float = option(
        0.0,
        help="Fraction of --dataset rows held out for validation when --val-dataset is empty.",
    )
    dataset_shuffle: bool = option(True, help="Shuffle the training rows (seeded by --data-seed).")
    packing: bool = option(False, help="Bin-pack encoded rows up to --max-length for training.")
    padding_free: bool = option(
        True,
        help="Batch the rows of a micro-batch as one row, each attending only to itself: no "
        "compute or memory spent on padding, the same rows and targets as padded batches "
        "(where the model's attention allows it; padded batches otherwise).",
    )

    def __post_init__(self) -> None:
        if not 0.0 <= self.split_dataset_ratio < 1.0:
            raise ConfigError(
                f"--split-dataset-ratio must be in [0, 1), got {self.split_dataset_ratio}",
                fix="e.g. --split-dataset-ratio 0.01 holds out 1% for validation",
            )
        super().__post_init__()


class Chain:
    """Streamed rows of several datasets, one after another; each iteration reads them again
    from the start (as each source's own stream does)."""

    def __init__(self, parts: Sequence[Any]) -> None:
        self.parts = list(parts)

    def __iter__(self) -> Iterator[dict]:
        for part in self.parts:
            yield from part


def read_rows(specs: Sequence[str], options: dict[str, Any]) -> list[dict] | Chain:
    """The canonical rows of every spec, in order: one list, or with ``streaming`` a
    :class:`Chain` of the sources' streams.

    Raises:
        MartletError: a spec no installed source reads, or one that has no rows.
    """
    import martlet

    parts = []
    for spec in specs:
        rows = martlet.load_dataset(spec, **options)
        if not options.get("streaming"):
            rows = list(rows)
            if not rows:  # martlet-data's sources say why themselves; another plugin's may not
                raise ConfigError(
                    f"dataset {spec!r} has no rows",
                    fix="check the dataset (or the source that reads it) and its options",
                )
        parts.append(rows)
    if options.get("streaming"):
        return parts[0] if len(parts) == 1 else Chain(parts)
    return [row for part in parts for row in part]


def load_train_val(options: TrainDataOptions, **read: Any) -> tuple[Any, Any]:
    """The training rows and the validation rows (or None) of ``options``; ``read`` adds
    reading options (online RL: ``prompts=True, keep_columns=True``).

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
    read = {**options.read_options(), **read}
    train = read_rows(options.dataset, read)
    val = read_rows(options.val_dataset, read) if options.val_dataset else None
    if options.streaming:
        if val is None and options.split_dataset_ratio > 0:
            raise ConfigError(
                "--split-dataset-ratio cannot split a streamed dataset",
                why="holding out a fraction needs the whole dataset in memory",
                fix="give --val-dataset instead, or drop --streaming",
            )
        return train, val
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
        held = set(order[:n_val] if options.dataset_shuffle else rng.sample(order, n_val))
        val = [train[i] for i in sorted(held)]
        order = [i for i in order if i not in held]
    return [train[i] for i in order], val
