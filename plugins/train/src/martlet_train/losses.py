"""The language-modelling objective shared by ``sft`` and ``pt``.

A loss returns the *sum* over target tokens and their count, never a mean: the loop divides by
the number of target tokens in the whole optimizer step (all micro-batches, all ranks), so one
batch of 8 rows and 4 micro-batches of 2 give the same update, and so do 1 rank and 2.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from martlet.examples import IGNORE_INDEX

IGNORE = IGNORE_INDEX  # the core's (martlet.examples)


def target_logits(
    model: Any, batch: dict[str, Any], *, head_input: bool = False
) -> tuple[Any, Any, Any]:
    """Run ``model`` on ``batch`` with the output layer only where a label is predicted.

    ``batch`` holds ``input_ids``, ``labels`` and ``attention_mask`` and/or ``position_ids``.
    Returns ``(logits, targets, predicts)``: logits ``[n_targets, vocab]`` in row-major order,
    the label each predicts, and the ``[batch, seq - 1]`` mask of predicting positions
    (``logits[:, t]`` predicts ``labels[:, t + 1]``). The vocabulary-wide logits of prompt and
    padding positions are never built (see :func:`logits_only_at`), which is most of a small
    model's activation memory. With ``head_input``, the output layer is skipped and the hidden
    states it would have seen at those positions come back instead of logits.
    """
    import torch.nn.functional as F

    inputs = {
        k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "position_ids")
    }
    labels = batch["labels"]
    predicts = labels[:, 1:] != IGNORE
    keep = F.pad(predicts, (0, 1), value=False)
    with logits_only_at(model, keep, skip_head=head_input) as selected:
        logits = model(**inputs).logits
    if not selected:
        logits = _last_columns(logits, labels)[:, :-1][predicts]
    return logits, labels[:, 1:][predicts].to(logits.device), predicts


class BoundLoss:
    """A loss record's function with its options: ``loss(model, batch)`` calls
    ``fn(model, batch, **options)``; other attributes (``prepare``, ``count``) are ``fn``'s."""

    def __init__(self, fn: Any, options: dict[str, Any], name: str = "") -> None:
        self.fn = fn
        self.options = dict(options)
        self.name = name

    def __call__(self, model: Any, batch: dict[str, Any]) -> Any:
        return self.fn(model, batch, **self.options)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.fn, name)


def causal_lm_loss(model: Any, batch: dict[str, Any]) -> tuple[Any, Any, dict[str, float]]:
    """The ``sft``/``pt`` loss: cross-entropy on the tokens whose label is not -100.

    Returns ``(loss_sum, target_count, metrics)``.
    """
    import torch.nn.functional as F
    from martlet.kernels import provided

    fused = provided(unwrapped(model), "output_cross_entropy")  # a kernel's (--kernels)
    if fused is not None:
        hidden, targets, predicts = target_logits(model, batch, head_input=True)
        return fused(hidden, targets), predicts.sum(), {}
    logits, targets, predicts = target_logits(model, batch)
    loss = F.cross_entropy(logits.float(), targets, reduction="sum")
    return loss, predicts.sum(), {}


def _last_columns(logits: Any, labels: Any) -> Any:
    if logits.shape[1] != labels.shape[1]:  # prompt tuning prepends virtual tokens
        return logits[:, -labels.shape[1] :]
    return logits


@contextlib.contextmanager
def logits_only_at(model: Any, keep: Any, *, skip_head: bool = False) -> Iterator[bool]:
    """While active, the model's output layer sees only the hidden states where ``keep``
    (``[batch, seq]`` bool) is true, so ``model(...).logits`` is ``[keep.sum(), vocab]`` in
    row-major order (``[keep.sum(), hidden]``, the layer's input, with ``skip_head``). Yields
    False (and changes nothing) for a model without ``get_output_embeddings``. Virtual tokens
    prepended by prompt tuning are never kept.
    """
    import torch.nn.functional as F

    get_head = getattr(unwrapped(model), "get_output_embeddings", None)
    head = get_head() if callable(get_head) else None
    if head is None:
        yield False
        return

    def select(module: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
        hidden, *rest = args
        mask = keep.to(hidden.device)
        if hidden.dim() != 3 or hidden.shape[0] != mask.shape[0]:
            return args
        extra = hidden.shape[1] - mask.shape[1]
        if extra > 0:
            mask = F.pad(mask, (extra, 0), value=False)
        return (hidden[mask], *rest)

    handle = head.register_forward_pre_hook(select)
    if skip_head:
        head.forward = _identity  # an instance attribute: the pre-hook still runs first
    try:
        yield True
    finally:
        handle.remove()
        if skip_head:
            del head.forward


def unwrapped(model: Any) -> Any:
    """The model inside a parallel wrapper (DDP's ``module``), for what it holds; its forward
    pass still runs through the wrapper (which keeps the ranks' gradients in sync)."""
    from accelerate.utils import extract_model_from_parallel

    return extract_model_from_parallel(model, keep_torch_compile=True)


def _identity(hidden: Any) -> Any:
    return hidden
