"""Activation memory: full or selective recomputation in the backward pass.

``--gradient-checkpointing`` keeps only each decoder layer's input and recomputes the whole
layer in the backward pass (least memory, about a third more compute). ``--selective-
checkpointing`` keeps the outputs of the large matrix products and attention, and recomputes
only what is cheap: element-wise ops (norms, activations, rotary embeddings, dropout, residual
adds) and the low-rank products of adapters. Most of a layer's saved tensors are those cheap
intermediates, so it saves much of the memory for a small part of the time.
"""

from __future__ import annotations

import functools
from typing import Any

#: a matrix product whose inner dimension is at most this is cheap to recompute (LoRA's B)
LOW_RANK = 64


def enable(model: Any, *, selective: bool) -> None:
    """Turn on activation checkpointing in a Hugging Face model's decoder layers."""
    kwargs: dict[str, Any] = {"use_reentrant": False}
    if selective:
        kwargs["context_fn"] = selective_context
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    model.config.use_cache = False


def selective_context() -> Any:
    """The ``context_fn`` of :func:`torch.utils.checkpoint.checkpoint` for selective
    recomputation (PyTorch's selective activation checkpointing)."""
    from torch.utils.checkpoint import create_selective_checkpoint_contexts

    return create_selective_checkpoint_contexts(_policy())


@functools.cache
def _expensive_ops() -> frozenset[Any]:
    import torch

    aten = torch.ops.aten
    names = (
        "mm",
        "addmm",
        "bmm",
        "baddbmm",
        "_scaled_dot_product_flash_attention_for_cpu",
        "_scaled_dot_product_efficient_attention",
        "_scaled_dot_product_flash_attention",
        "_scaled_dot_product_cudnn_attention",
        "_flash_attention_forward",
    )
    return frozenset(getattr(aten, n).default for n in names if hasattr(aten, n))


def _policy() -> Any:
    from torch.utils.checkpoint import CheckpointPolicy

    expensive = _expensive_ops()

    def policy(ctx: Any, op: Any, *args: Any, **kwargs: Any) -> Any:
        if op in expensive and not _low_rank(op, args):
            return CheckpointPolicy.MUST_SAVE
        return CheckpointPolicy.PREFER_RECOMPUTE

    return policy


def _low_rank(op: Any, args: tuple[Any, ...]) -> bool:
    """An adapter's thin product (``x @ A`` or ``h @ B`` with a small inner dimension)."""
    tensors = [a for a in args if hasattr(a, "shape") and len(a.shape) >= 2]
    if len(tensors) < 2:
        return False
    inner = tensors[-2].shape[-1]  # mm(a, b), addmm(bias, a, b): a's last dimension
    return inner <= LOW_RANK or tensors[-1].shape[-1] <= LOW_RANK
