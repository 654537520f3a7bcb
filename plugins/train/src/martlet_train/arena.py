"""Saved activations in memory kept from one micro-batch to the next.

A forward pass interleaves the tensors autograd saves for the backward pass (kept until then)
with temporaries (freed at once). The C heap cannot return the holes the temporaries leave
between saved tensors, and later allocations rarely fit them exactly, so on a CPU the process
holds more than is alive.

:class:`SavedTensorArena` copies each saved tensor's storage, once, into large blocks that
live for the whole run and are refilled from the start by every forward pass; the original is
freed as soon as the forward pass no longer needs it, so saved tensors leave no holes. The
copy is one pass over the saved bytes; on the LoRA benchmark of ``bench/msswift_sft.py``
(fp32) the peak fell from 1.70 to 1.64 GiB at the same speed (DeepSpeed's
``contiguous_memory_optimization`` does the same for checkpointed activations on GPUs). Only
plain CPU tensors are copied; anything else (CUDA, whose caching allocator has no such
problem, tensor subclasses, sparse layouts) is saved as it is.

A saved tensor's memory is refilled by the next forward pass: reading it after that (a new
micro-batch's forward before the previous one's backward, or a second backward with
``retain_graph``) raises :class:`ReusedActivationError` instead of computing with another
batch's values.
"""

from __future__ import annotations

import weakref
from typing import Any

from martlet.errors import MartletError

#: bytes of each block (a larger saved tensor gets a block of its own size)
BLOCK_BYTES = 32 << 20
#: start of every copy, in bytes: a multiple of every element size (and a cache line)
ALIGN = 64


class ReusedActivationError(MartletError):
    """A saved activation was read after a later forward pass reused its memory."""


class SavedTensorArena:
    """Pack and unpack hooks (:func:`torch.autograd.graph.saved_tensors_hooks`) that keep
    saved CPU tensors in reusable blocks and count the bytes saved; :meth:`start` before each
    forward pass."""

    def __init__(self, block_bytes: int = BLOCK_BYTES) -> None:
        self.block_bytes = int(block_bytes)
        self.generation = 0  #: forward passes started; a packed tensor remembers its own
        self.saved_bytes = 0  #: bytes of the distinct storages saved in this forward pass
        self._blocks: list[Any] = []  # uint8 tensors
        self._block = 0  # the block being filled
        self._offset = 0  # bytes used in it
        # storage address -> (the first tensor saved from it, its version, the copy)
        self._copies: dict[int, tuple[Any, int, Any]] = {}

    @property
    def reserved(self) -> int:
        """Bytes of the blocks allocated so far (resident only once written)."""
        return sum(int(b.numel()) for b in self._blocks)

    def start(self) -> None:
        """A new forward pass: its saved tensors overwrite the last one's."""
        self.generation += 1
        self.saved_bytes = self._block = self._offset = 0
        self._copies.clear()

    def release(self) -> None:
        """Give the blocks back (the end of a run)."""
        self.start()
        self._blocks.clear()

    def pack(self, tensor: Any) -> Any:
        """The pack hook: a copy of ``tensor`` in the arena, or ``tensor`` itself."""
        import torch

        storage = tensor.untyped_storage()
        size = storage.nbytes()
        address = storage.data_ptr()
        known = self._copies.get(address)
        # the same storage saved again (q, k and v read one normed input) is kept once,
        # unless that storage was freed and its address reused, or written in place since
        if known is None or known[0]() is None or known[1] != tensor._version:
            copyable = (
                type(tensor) in (torch.Tensor, torch.nn.Parameter)
                and tensor.device.type == "cpu"
                and tensor.layout == torch.strided
                and not (tensor.is_conj() or tensor.is_neg())
                and size > 0
                and size % tensor.element_size() == 0
            )
            copy = None
            if copyable:
                copy = self._reserve(size)
                copy.copy_(torch.empty(0, dtype=torch.uint8).set_(storage))
            known = (weakref.ref(tensor), tensor._version, copy)
            self._copies[address] = known
            self.saved_bytes += size
        if known[2] is None:
            return tensor
        typed = known[2].view(tensor.dtype)
        view = typed.as_strided(
            tensor.size(), tensor.stride(), typed.storage_offset() + tensor.storage_offset()
        )
        return _Packed(view, self.generation)

    def unpack(self, packed: Any) -> Any:
        """The unpack hook: the saved tensor, if its memory still holds it."""
        if not isinstance(packed, _Packed):
            return packed
        if packed.generation != self.generation:
            raise ReusedActivationError(
                "a saved activation was read after a later forward pass reused its memory",
                why="a micro-batch's forward pass started before the backward pass of the "
                "previous one (or a graph was run backward twice) inside the activation "
                "budget, which refills the same memory every forward pass",
                fix="run each forward pass's backward before the next forward pass, or train "
                "with --max-activation-memory none",
            )
        return packed.tensor

    def _reserve(self, size: int) -> Any:
        """``size`` bytes (a uint8 tensor) at the next aligned place in the blocks."""
        import torch

        start = -(-self._offset // ALIGN) * ALIGN
        while True:
            if self._block == len(self._blocks):
                block = torch.empty(max(self.block_bytes, size), dtype=torch.uint8)
                self._blocks.append(block)
            if start + size <= self._blocks[self._block].numel():
                break
            self._block, start = self._block + 1, 0
        self._offset = start + size
        return self._blocks[self._block][start : self._offset]


class _Packed:
    """A saved tensor's copy and the forward pass that wrote it."""

    __slots__ = ("generation", "tensor")

    def __init__(self, tensor: Any, generation: int) -> None:
        self.tensor = tensor
        self.generation = generation
