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

Some saved tensors are cheap to compute again from others that are saved anyway: the lean MLP's
``silu(gate) * up`` (the down projection's input) from ``gate`` and ``up``, a norm's output from
its input and scale. Their producer declares that with :func:`derived` while an arena is
active (:meth:`SavedTensorArena.active`); when autograd then saves such a tensor, the arena
keeps only a recipe — the function and its (saved) inputs — and computes the tensor again when
the backward pass reads it, once for all the nodes that saved it. On a Llama layer that is
~30% of the saved bytes, for one element-wise pass per derived tensor in the backward pass.

A saved tensor's memory is refilled by the next forward pass: reading it after that (a new
micro-batch's forward before the previous one's backward, or a second backward with
``retain_graph``) raises :class:`ReusedActivationError` instead of computing with another
batch's values.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from martlet.errors import MartletError

#: bytes of each block (a larger saved tensor gets a block of its own size)
BLOCK_BYTES = 32 << 20
#: start of every copy, in bytes: a multiple of every element size (and a cache line)
ALIGN = 64


def derived(out: Any, compute: Callable[..., Any], *inputs: Any) -> Any:
    """Declare that ``out`` is ``compute(*inputs)``, recomputable in the backward pass from
    ``inputs`` (tensors autograd saves anyway); returns ``out``. The core's
    :func:`martlet.memory.derived`, which kernels of other plugins call: while an arena is
    :meth:`~SavedTensorArena.active`, the declarations go to its :meth:`~SavedTensorArena.derive`.
    """
    from martlet.memory import derived as declare

    return declare(out, compute, *inputs)


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
        # storage address -> (the first tensor saved from it, its version, what is kept: a
        # copy, a weak reference to a _Recipe, or None for the tensor itself)
        self._copies: dict[int, tuple[Any, int, Any]] = {}
        # storage address -> what derived() declared: (out, its version, compute, the
        # inputs as packed)
        self._derivations: dict[int, tuple[Any, int, Any, list[Any]]] = {}
        #: whether derived() declarations are taken (not inside a checkpointed layer, whose
        #: tensors are not saved here at all)
        self.deriving = True

    @contextlib.contextmanager
    def active(self) -> Iterator[SavedTensorArena]:
        """While active, :func:`derived` declarations are this arena's (the forward pass),
        those of other plugins' kernels included (:func:`martlet.memory.derived`)."""
        from martlet.memory import deriving

        with deriving(self.derive):
            yield self

    def derive(self, out: Any, compute: Callable[..., Any], *inputs: Any) -> Any:
        """Take a :func:`derived` declaration; returns ``out``.

        For a tensor the arena could not rebuild exactly (not a contiguous CPU tensor filling
        its whole storage), or inside a checkpointed layer (:attr:`deriving` off), it does
        nothing. ``compute`` must give the same values from the same inputs (run again under
        ``torch.no_grad()``). The inputs are saved into the arena at once (the producer saves
        them anyway: kept once), so the recipe never holds on to a tensor the forward pass
        would have freed."""
        import torch

        if (
            type(out) is not torch.Tensor
            or out.device.type != "cpu"
            or out.layout != torch.strided
            or not out.is_contiguous()
            or out.storage_offset() != 0
            or out.untyped_storage().nbytes() != out.numel() * out.element_size()
            or not all(type(t) in (torch.Tensor, torch.nn.Parameter) for t in inputs)
        ):
            return out
        if self.deriving:
            self._declare(out, compute, inputs)
        return out

    @property
    def reserved(self) -> int:
        """Bytes of the blocks allocated so far (resident only once written)."""
        return sum(int(b.numel()) for b in self._blocks)

    def start(self) -> None:
        """A new forward pass: its saved tensors overwrite the last one's."""
        self.generation += 1
        self.saved_bytes = self._block = self._offset = 0
        self._copies.clear()
        self._derivations.clear()

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
        if known is not None and isinstance(known[2], weakref.ref):
            recipe = known[2]()
            if recipe is not None and known[0]() is not None and known[1] == tensor._version:
                return _PackedDerived(recipe, tensor, self.generation)
            known = None
        # the same storage saved again (q, k and v read one normed input) is kept once,
        # unless that storage was freed and its address reused, or written in place since
        if known is None or known[0]() is None or known[1] != tensor._version:
            recipe = self._recipe(tensor, address)
            if recipe is not None:
                self._copies[address] = (weakref.ref(tensor), tensor._version, weakref.ref(recipe))
                return _PackedDerived(recipe, tensor, self.generation)
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

    def _declare(self, out: Any, compute: Callable[..., Any], inputs: tuple[Any, ...]) -> None:
        self._derivations[out.untyped_storage().data_ptr()] = (
            weakref.ref(out),
            out._version,
            compute,
            [self._pack_input(t) for t in inputs],
        )

    def _recipe(self, tensor: Any, address: int) -> _Recipe | None:
        """How to compute ``tensor`` again, if :func:`derived` declared its storage and the
        declaration still holds (the tensor alive and not written since)."""
        declared = self._derivations.get(address)
        if declared is None:
            return None
        out, version, compute, inputs = declared
        if out() is None or out()._version != version or tensor._version != version:
            return None
        return _Recipe(compute, inputs, out().shape, out().dtype)

    def _pack_input(self, tensor: Any) -> Any:
        import torch

        if isinstance(tensor, torch.nn.Parameter):
            return tensor  # a weight: kept by the model, not copied
        return self.pack(tensor)

    def unpack(self, packed: Any) -> Any:
        """The unpack hook: the saved tensor, if its memory still holds it."""
        if isinstance(packed, _PackedDerived):
            self._check(packed.generation)
            recipe = packed.recipe
            return recipe.value(self).as_strided(packed.size, packed.stride, packed.offset)
        if not isinstance(packed, _Packed):
            return packed
        self._check(packed.generation)
        return packed.tensor

    def _check(self, generation: int) -> None:
        if generation != self.generation:
            raise ReusedActivationError(
                "a saved activation was read after a later forward pass reused its memory",
                why="a micro-batch's forward pass started before the backward pass of the "
                "previous one (or a graph was run backward twice) inside the activation "
                "budget, which refills the same memory every forward pass",
                fix="run each forward pass's backward before the next forward pass, or train "
                "with --max-activation-memory none",
            )

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


class _Recipe:
    """A derived tensor, computed again when first read in the backward pass and kept for
    the other nodes that saved it (q, k and v read one normed input); it lives as long as
    those nodes, the arena keeps only a weak reference."""

    __slots__ = ("__weakref__", "compute", "dtype", "inputs", "shape", "_value")

    def __init__(self, compute: Callable[..., Any], inputs: list[Any], shape: Any, dtype: Any):
        self.compute = compute
        self.inputs = inputs
        self.shape = tuple(shape)
        self.dtype = dtype
        self._value: Any = None

    def value(self, arena: SavedTensorArena) -> Any:
        import torch

        if self._value is None:
            inputs = [
                arena.unpack(t) if isinstance(t, (_Packed, _PackedDerived)) else t
                for t in self.inputs
            ]
            with torch.no_grad():
                value = self.compute(*inputs)
            if tuple(value.shape) != self.shape or value.dtype != self.dtype:
                raise RuntimeError(
                    f"a derived activation was recomputed as {value.dtype} {tuple(value.shape)}"
                    f", not the {self.dtype} {self.shape} declared"
                )
            if value.storage_offset() or not value.is_contiguous():
                value = value.clone(memory_format=torch.contiguous_format)
            self._value = value
        return self._value


class _PackedDerived:
    """A saved tensor kept as a :class:`_Recipe` and the view of its result it was."""

    __slots__ = ("generation", "offset", "recipe", "size", "stride")

    def __init__(self, recipe: _Recipe, tensor: Any, generation: int) -> None:
        self.recipe = recipe
        self.size = tuple(tensor.size())
        self.stride = tuple(tensor.stride())
        self.offset = tensor.storage_offset()
        self.generation = generation
