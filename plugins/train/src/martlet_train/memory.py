"""Activation memory: full or selective recomputation in the backward pass.

``--gradient-checkpointing`` keeps only each decoder layer's input and recomputes the whole
layer in the backward pass (least memory, about a third more compute). ``--selective-
checkpointing`` keeps the outputs of the large matrix products and attention, and recomputes
only what is cheap: element-wise ops (norms, activations, rotary embeddings, dropout, residual
adds) and the low-rank products of adapters. Most of a layer's saved tensors are those cheap
intermediates, so it saves much of the memory for a small part of the time.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any

from martlet_train.arena import SavedTensorArena

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


class ActivationBudget:
    """Recompute as few decoder layers as each micro-batch needs to keep the activations its
    forward pass saves within ``limit`` bytes (``--max-activation-memory``).

    While a forward pass runs inside :meth:`saving`, every tensor autograd saves is counted
    once (parameters excluded). The first layer of a batch is planned from the bytes a plain
    layer saved per token in the last batch; after each layer, the next one runs plainly if the
    bytes saved so far plus two layers' worth (its own activations, and the room a
    recomputed layer needs in the backward pass) fit, else it is checkpointed: only its input
    is kept and it runs again in the backward pass. Short batches run with no recomputation
    at all, long ones recompute just enough layers; the same gradients either way. The saved
    tensors are kept in a :class:`~martlet_train.arena.SavedTensorArena`, so the memory the
    process holds is what the budget counts, not that plus the heap's holes.
    """

    def __init__(self, model: Any, limit: int) -> None:
        from transformers.modeling_layers import GradientCheckpointingLayer

        self.limit = int(limit)
        self.layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
        self.enabled = bool(self.layers) and hasattr(model, "gradient_checkpointing_enable")
        self.per_token: float | None = None  # bytes a plain layer saved per token
        self.checkpointed = 0  # layers recomputed in the last batch
        self._active = False
        self._params: set[int] = set()
        self.arena = SavedTensorArena()
        self._tokens = 0
        self._layer_start = 0
        if not self.enabled:
            return
        enable(model, selective=False)
        for i, layer in enumerate(self.layers):
            layer.gradient_checkpointing = False
            layer.register_forward_pre_hook(self._before)
            layer.register_forward_hook(functools.partial(self._after, i))

    @property
    def used(self) -> int:
        """Bytes saved by the forward pass of the current (or last) batch."""
        return self.arena.saved_bytes

    def saving(self, model: Any, tokens: int) -> Any:
        """The context a micro-batch's forward pass runs in (``tokens``: its positions)."""
        import torch

        if not self.enabled:
            return contextlib.nullcontext()
        if not self._params:  # the trained model's parameters: the tuner has added its own
            self._params = _storage_keys(model.parameters())
        self.arena.start()
        self._tokens, self.checkpointed = int(tokens), 0
        self._plan(0)

        @contextlib.contextmanager
        def counting() -> Any:
            self._active = True
            try:
                with torch.autograd.graph.saved_tensors_hooks(self._pack, self.arena.unpack):
                    with self.arena.active():
                        yield
            finally:
                self._active = False

        return counting()

    def _pack(self, tensor: Any) -> Any:
        try:
            key = tensor.untyped_storage().data_ptr()
        except (RuntimeError, NotImplementedError):  # a tensor without storage
            return tensor
        return tensor if key in self._params else self.arena.pack(tensor)

    def release(self) -> None:
        """Free the memory kept for saved activations (the end of a run)."""
        self.arena.release()

    def _plan(self, i: int) -> None:
        """Whether layer ``i`` runs plainly or checkpointed in this batch."""
        if i >= len(self.layers):
            return
        plain = True
        if self.per_token is not None:
            plain = self.used + 2 * self.per_token * self._tokens <= self.limit
        self.layers[i].gradient_checkpointing = not plain
        self.checkpointed += not plain

    def _before(self, layer: Any, args: Any) -> None:
        if self._active:
            self._layer_start = self.used
            self.arena.deriving = not layer.gradient_checkpointing

    def _after(self, i: int, layer: Any, args: Any, output: Any) -> None:
        if not self._active:
            return  # a checkpointed layer recomputed in the backward pass
        self.arena.deriving = True
        if not layer.gradient_checkpointing and self._tokens:
            self.per_token = (self.used - self._layer_start) / self._tokens
        self._plan(i + 1)


def parse_size(value: str | int | float) -> int:
    """Bytes from ``512MB``, ``1.5GiB``, ``800000000``, ... (decimal and binary units)."""
    from martlet.errors import ConfigError

    if isinstance(value, (int, float)):
        return int(value)
    text = str(value).strip().lower().replace(" ", "")
    units = {"": 1, "b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12}
    units |= {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40, "k": 2**10}
    units |= {"m": 2**20, "g": 2**30}
    number = text.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = text[len(number) :]
    try:
        return int(float(number) * units[unit])
    except (KeyError, ValueError):
        raise ConfigError(
            f"cannot read {value!r} as a size",
            fix="e.g. 512MB, 1.5GiB or a number of bytes",
        ) from None


def _storage_keys(tensors: Any) -> set[int]:
    """The storages ``tensors`` hold: a quantized tensor (a subclass keeping inner tensors, as
    optimum-quanto's do) by its inner tensors'; a tensor without storage is passed over."""
    keys: set[int] = set()
    for t in tensors:
        if getattr(type(t), "__tensor_flatten__", None) is not None:
            names, _ = t.__tensor_flatten__()
            keys |= _storage_keys(getattr(t, n) for n in names)
            continue
        try:
            keys.add(t.untyped_storage().data_ptr())
        except (RuntimeError, NotImplementedError):
            pass
    return keys
