"""Packing and batching encoded examples (:mod:`martlet.examples`) for training.

* :func:`pack_rows` bin-packs encoded rows (best-fit decreasing) into packed rows of at most
  ``max_length`` tokens. A packed row holds ``input_ids``, ``labels`` and ``position_ids`` that
  restart at 0 for each row it holds, and ``seq_lens`` (the length of each). The first label of
  each packed row is set to -100, so no token is ever trained to predict the first token of the
  next, unrelated row (the same as unpacked, where the first token has nothing before it).
* :class:`PackedCollator` batches packed rows; attention stays within each row either through a
  4D block-diagonal mask (``mask="4d"``, the default: right for eager and sdpa attention,
  whatever the model does with its cache) or through ``position_ids`` alone
  (``mask="position_ids"``: what flash-attention kernels use, and what transformers' sdpa/eager
  mask builder detects — but only when the model is called with ``use_cache=False`` and no
  ``attention_mask``; ``transformers.masking_utils.find_packed_sequence_indices``).
* :class:`PaddingCollator` pads unpacked rows to the longest in the batch (labels -100) and
  reports the fraction of padding.

torch is imported when a collator is called.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from martlet.errors import ConfigError
from martlet.examples import IGNORE_INDEX

log = logging.getLogger("martlet.train")


def plan_bins(lengths: Sequence[int], max_length: int) -> list[list[int]]:
    """Best-fit decreasing: group row indexes into bins whose lengths sum to ``<= max_length``.

    Rows are placed longest first, each into the bin it fills most tightly (ties: the bin
    opened first); deterministic. Returns the bins in the order they were opened, each listing
    its row indexes in placement order.

    Raises:
        ConfigError: a row longer than ``max_length`` (truncate or delete such rows first).
    """
    if max_length < 1:
        raise ConfigError(f"max_length must be at least 1 to pack rows, got {max_length}")
    for i, n in enumerate(lengths):
        if n > max_length:
            raise ConfigError(
                f"row {i} has {n} tokens, more than the packing length {max_length}",
                fix="encode with a template max_length no larger than the packing length "
                "(rows longer than it are then cut or deleted)",
            )
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (remaining room, bin index), sorted
    for i in order:
        n = lengths[i]
        at = bisect.bisect_left(free, (n, -1))
        if at < len(free):
            room, b = free.pop(at)
        else:
            room, b = max_length, len(bins)
            bins.append([])
        bins[b].append(i)
        if room - n > 0:
            bisect.insort(free, (room - n, b))
    return bins


def pack_rows(rows: Sequence[Mapping[str, Any]], max_length: int) -> list[dict[str, Any]]:
    """Pack encoded rows into rows of at most ``max_length`` tokens (see the module doc).

    Args:
        rows: dicts with ``input_ids`` and ``labels`` (lists of ints), e.g. from
            :func:`martlet.examples.encode_rows`.
        max_length: the most tokens in a packed row.

    Returns:
        Packed rows: ``input_ids``, ``labels``, ``position_ids`` (lists) and ``seq_lens``.
    """
    lengths = [len(r["input_ids"]) for r in rows]
    bins = plan_bins(lengths, max_length)
    packed = [concatenate([rows[i] for i in members], members) for members in bins]
    total = sum(lengths)
    if packed:
        fill = total / (len(packed) * max_length)
        log.info(
            "packed %d rows into %d rows of <= %d tokens (%.1f%% full)",
            len(rows),
            len(packed),
            max_length,
            100 * fill,
        )
    return packed


def concatenate(
    rows: Sequence[Mapping[str, Any]], names: Sequence[int] | None = None
) -> dict[str, Any]:
    """One packed row holding ``rows`` in order (see the module doc); ``names`` number the rows
    in error messages (default: their places in ``rows``)."""
    ids: list[int] = []
    labels: list[int] = []
    positions: list[int] = []
    for i, row in zip(names if names is not None else range(len(rows)), rows, strict=True):
        row_ids, row_labels = list(row["input_ids"]), list(row["labels"])
        if len(row_labels) != len(row_ids):
            raise ConfigError(f"row {i}: labels and input_ids differ in length")
        row_labels[0] = IGNORE_INDEX
        ids += row_ids
        labels += row_labels
        positions += range(len(row_ids))
    return {
        "input_ids": ids,
        "labels": labels,
        "position_ids": positions,
        "seq_lens": [len(r["input_ids"]) for r in rows],
    }


def _torch_dtype(dtype: Any) -> Any:
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    found = getattr(torch, str(dtype), None)
    if not isinstance(found, torch.dtype) or not found.is_floating_point:
        raise ConfigError(f"unknown floating dtype {dtype!r} for the attention mask")
    return found


def block_diagonal_mask(seq_lens: Sequence[Sequence[int]], length: int, dtype: Any = "float32"):
    """The additive 4D attention mask ``[batch, 1, length, length]`` of packed rows: 0 where a
    token may attend (itself and earlier tokens of its own row), the dtype's minimum elsewhere.

    ``seq_lens[b]`` are the row lengths packed in batch item ``b``; positions past their sum
    (padding) form one more block of their own.
    """
    import torch

    dtype = _torch_dtype(dtype)
    segments = torch.zeros(len(seq_lens), length, dtype=torch.long)
    for b, lens in enumerate(seq_lens):
        start = 0
        for s, n in enumerate(lens):
            segments[b, start : start + n] = s
            start += n
        segments[b, start:] = len(lens)
    same = segments[:, :, None] == segments[:, None, :]
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    allowed = same & causal
    mask = torch.zeros(allowed.shape, dtype=dtype)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return mask[:, None, :, :]


def _round_up(n: int, multiple: int | None) -> int:
    if not multiple:
        return n
    return -(-n // multiple) * multiple


class _PaddingStats:
    def __init__(self) -> None:
        self.real_tokens = 0
        self.padded_tokens = 0
        self.last_padding_fraction = 0.0

    def _count(self, real: int, total: int) -> None:
        self.real_tokens += real
        self.padded_tokens += total - real
        self.last_padding_fraction = (total - real) / total if total else 0.0

    @property
    def padding_fraction(self) -> float:
        """Padding tokens / all tokens over every batch built so far."""
        total = self.real_tokens + self.padded_tokens
        return self.padded_tokens / total if total else 0.0


class PaddingCollator(_PaddingStats):
    """Pads encoded rows to the longest in the batch.

    Args:
        pad_token_id: the id padding ``input_ids``.
        padding_side: ``right`` (default) or ``left``.
        pad_to_multiple_of: round the padded length up to a multiple of this.

    Calling it on a list of encoded rows returns tensors: ``input_ids``, ``attention_mask``
    (0 on padding) and ``labels`` (-100 on padding); preference rows also give the
    ``rejected_`` trio padded to the same length (and ``margin`` where rows have one); KTO
    rows give ``label`` (bool);
    ``num_tokens`` counts the real tokens. ``padding_fraction`` (all batches so far) and
    ``last_padding_fraction`` report padding.
    """

    def __init__(
        self,
        pad_token_id: int,
        *,
        padding_side: str = "right",
        pad_to_multiple_of: int | None = None,
    ) -> None:
        super().__init__()
        if pad_token_id is None:
            raise ConfigError(
                "the padding collator needs a pad token id",
                fix="set tokenizer.pad_token (e.g. to the EOS token) before batching",
            )
        if padding_side not in ("right", "left"):
            raise ConfigError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
        self.pad_token_id = int(pad_token_id)
        self.padding_side = padding_side
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        import torch

        if not rows:
            raise ConfigError("cannot collate an empty batch")
        prefixes = [""] + (["rejected_"] if "rejected_input_ids" in rows[0] else [])
        longest = max(len(r[f"{p}input_ids"]) for r in rows for p in prefixes)
        length = _round_up(longest, self.pad_to_multiple_of)
        batch: dict[str, Any] = {}
        real = 0
        for p in prefixes:
            ids, masks, labels = [], [], []
            for r in rows:
                n = len(r[f"{p}input_ids"])
                real += n
                pad = length - n
                mask = list(r.get(f"{p}attention_mask") or [1] * n)
                if self.padding_side == "right":
                    ids.append(list(r[f"{p}input_ids"]) + [self.pad_token_id] * pad)
                    masks.append(mask + [0] * pad)
                    labels.append(list(r[f"{p}labels"]) + [IGNORE_INDEX] * pad)
                else:
                    ids.append([self.pad_token_id] * pad + list(r[f"{p}input_ids"]))
                    masks.append([0] * pad + mask)
                    labels.append([IGNORE_INDEX] * pad + list(r[f"{p}labels"]))
            batch[f"{p}input_ids"] = torch.tensor(ids, dtype=torch.long)
            batch[f"{p}attention_mask"] = torch.tensor(masks, dtype=torch.long)
            batch[f"{p}labels"] = torch.tensor(labels, dtype=torch.long)
        if "label" in rows[0]:
            batch["label"] = torch.tensor([bool(r["label"]) for r in rows])
        if any("margin" in r for r in rows):
            batch["margin"] = torch.tensor([float(r.get("margin", 0.0)) for r in rows])
        batch["num_tokens"] = torch.tensor(real)  # real (non-padding) tokens, for throughput
        self._count(real, length * len(rows) * len(prefixes))
        return batch


class PackedCollator(_PaddingStats):
    """Batches packed rows (from :func:`pack_rows`).

    Args:
        pad_token_id: the id padding ``input_ids`` when packed rows differ in length.
        mask: ``"4d"`` (default): also return ``attention_mask`` as an additive
            ``[batch, 1, L, L]`` block-diagonal mask in ``dtype`` (for eager and sdpa
            attention); ``"position_ids"``: no ``attention_mask`` at all — for flash-attention
            kernels, or sdpa/eager when the model is called with ``use_cache=False``.
        dtype: the dtype of the 4D mask (the model's compute dtype is best).
        pad_to_multiple_of: round the padded length up to a multiple of this.

    Returns tensors ``num_tokens`` (real tokens in the batch), ``input_ids``, ``labels`` (-100
    on padding), ``position_ids`` (restarting
    at 0 for every packed row; padding counts on as one more row) and, with ``mask="4d"``,
    ``attention_mask``.
    """

    def __init__(
        self,
        pad_token_id: int,
        *,
        mask: str = "4d",
        dtype: Any = "float32",
        pad_to_multiple_of: int | None = None,
    ) -> None:
        super().__init__()
        if mask not in ("4d", "position_ids"):
            raise ConfigError(f"mask must be '4d' or 'position_ids', got {mask!r}")
        self.pad_token_id = int(pad_token_id)
        self.mask = mask
        self.dtype = dtype
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        import torch

        if not rows:
            raise ConfigError("cannot collate an empty batch")
        length = _round_up(max(len(r["input_ids"]) for r in rows), self.pad_to_multiple_of)
        ids, labels, positions, seq_lens = [], [], [], []
        real = 0
        for r in rows:
            n = len(r["input_ids"])
            real += n
            pad = length - n
            ids.append(list(r["input_ids"]) + [self.pad_token_id] * pad)
            labels.append(list(r["labels"]) + [IGNORE_INDEX] * pad)
            positions.append(list(r["position_ids"]) + list(range(pad)))
            seq_lens.append(list(r.get("seq_lens") or [n]))
        batch = {
            "input_ids": torch.tensor(ids, dtype=torch.long),
            "labels": torch.tensor(labels, dtype=torch.long),
            "position_ids": torch.tensor(positions, dtype=torch.long),
        }
        if self.mask == "4d":
            batch["attention_mask"] = block_diagonal_mask(seq_lens, length, self.dtype)
        batch["num_tokens"] = torch.tensor(real)  # real (non-padding) tokens, for throughput
        self._count(real, length * len(rows))
        return batch


class PaddingFreeCollator(PackedCollator):
    """Batches encoded rows without padding: the rows of a batch become one packed row
    (``position_ids`` restarting at 0 for each, no ``attention_mask``), so no position is
    spent on padding. The same rows and target tokens as :class:`PaddingCollator`'s batch;
    the model must keep attention within each row (flash attention, or eager/sdpa switched to
    Martlet's segment-by-segment attention). ms-swift's and TRL's ``padding_free``."""

    def __init__(self, pad_token_id: int) -> None:
        super().__init__(pad_token_id, mask="position_ids")

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        if not rows:
            raise ConfigError("cannot collate an empty batch")
        return super().__call__([concatenate(rows)])
