"""Adapter dropout with a fast random mask on the CPU.

LoRA's dropout draws a fresh mask the size of each adapted layer's input, for every adapted
layer and step: ~300 million elements per step for four packed 512-token rows on
SmolLM2-135M. PyTorch's CPU ``bernoulli_`` makes them at ~5 ns per element (a fifth of a
training step, ``bench/RESULTS.md``); NumPy's PCG64 draws at ~1 ns. :func:`keep_mask` uses the
SplitMix64 stream instead — word ``w`` of a mask is SplitMix64's output for the state
``seed + (w + 1) * 0x9E3779B97F4A7C15``, read as four 16-bit draws — which, being a function of
the word's index, compiles with numba into a branch-free loop at ~0.15 ns per element; without
numba the same bits come from vectorised NumPy (slower). The seed comes from torch's default
generator, so ``torch.manual_seed`` still fixes every mask and a resumed run (torch's RNG state
restored) or a replayed checkpointed forward draws the same masks. :class:`FastDropout` is
``nn.Dropout`` with that mask (the fused LoRA layers of :mod:`martlet_kernels.fused_lora` use it
directly); off the CPU it is ``nn.Dropout``.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterator
from typing import Any

import torch

_SEED_HIGH = 2**62
BF16_ONE = 0x3F80


class FastDropout(torch.nn.Dropout):
    """``nn.Dropout(p)`` whose CPU mask comes from :func:`keep_mask` (same distribution)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0 or x.device.type != "cpu" or self.inplace:
            return super().forward(x)
        p = drop_probability(self.p)
        if p == 1.0:
            return x * 0.0
        keep = keep_mask(tuple(x.shape), self.p, x.device, x.dtype)
        return x * keep.mul_(1.0 / (1.0 - p))


def keep_mask(shape: tuple[int, ...], p: float, device: Any, dtype: torch.dtype) -> torch.Tensor:
    """A dropout mask of ``shape``: 1 where an element is kept, 0 where it is dropped (with
    probability :func:`drop_probability` ``(p)``), in ``dtype`` on ``device``.

    The bits are the SplitMix64 stream of the module doc, seeded from torch's default
    generator, so ``torch.manual_seed`` and a restored RNG state fix every mask. An element is
    dropped when its 16-bit draw is below ``round(p * 65536)``. Off the CPU the mask is drawn
    on the device by torch (its generator, the same probability).
    """
    return DropMask(shape, p, device, dtype).keep()


class DropMask:
    """One dropout mask over a tensor of ``shape``, applied without being kept in memory where
    possible.

    On the CPU it is a seed of the module doc's stream, drawn from torch's generator
    (:func:`keep_mask` is this class's :meth:`keep`, so both drop the same elements from the
    same seed): :meth:`dropped` and :meth:`zero_dropped_`
    clear the dropped elements of a bfloat16 or float32 tensor in one compiled pass over its
    bits (numba's :func:`~martlet_kernels._mask_kernel.and_mask_words`, four values per 64-bit
    word, and :func:`~martlet_kernels._mask_kernel.and_mask_words32`, two); other dtypes, or no
    numba, multiply by :meth:`keep`. Elsewhere it holds the mask drawn on the
    device."""

    def __init__(self, shape: tuple[int, ...], p: float, device: Any, dtype: torch.dtype):
        self.shape = tuple(shape)
        self.threshold = _threshold(p)
        self.dtype = dtype
        self._keep = None
        self.seed = 0
        if torch.device(device).type == "cpu":
            self.seed = int(torch.randint(0, _SEED_HIGH, (1,)))
        else:
            uniform = torch.rand(self.shape, device=device)
            self._keep = (uniform >= drop_probability(p)).to(dtype)

    def keep(self) -> torch.Tensor:
        """The 0/1 mask in :attr:`dtype` (:func:`keep_mask`'s result)."""
        if self._keep is not None:
            return self._keep
        # the bit patterns of bfloat16 0 and 1: a 0/1 mask in bfloat16 without a cast
        bits = _mask_bits(math.prod(self.shape), self.seed, self.threshold)
        mask = torch.from_numpy(bits).view(torch.bfloat16).reshape(self.shape)
        return mask.to(dtype=self.dtype)

    def dropped(self, x: torch.Tensor) -> torch.Tensor:
        """A copy of ``x`` (of :attr:`shape`) with the dropped elements set to 0."""
        words = self._words(x)
        if words is None:
            return x * self.keep().reshape(x.shape)
        out = torch.empty_like(x)
        _and_kernel(x.dtype)[0](words, self._words(out), self.seed, self.threshold)
        return out

    def zero_dropped_(self, x: torch.Tensor) -> torch.Tensor:
        """Set the dropped elements of ``x`` to 0, in place; returns ``x``."""
        words = self._words(x)
        if words is None:
            return x.mul_(self.keep().reshape(x.shape))
        _and_kernel(x.dtype)[1](words, self.seed, self.threshold)
        return x

    def _words(self, x: torch.Tensor) -> Any:
        """``x``'s bits as uint64 words when the compiled pass applies to it, else None."""
        import numpy as np

        if (
            self._keep is not None
            or x.dtype not in (torch.bfloat16, torch.float32)
            or x.device.type != "cpu"
            or type(x) is not torch.Tensor
            or x.numel() % 4
            or x.data_ptr() % 8
            or not x.is_contiguous()
            or _and_kernel(x.dtype) is None
        ):
            return None
        return x.detach().view(-1).view(torch.int64).numpy().view(np.uint64)


def _mask_bits(size: int, seed: int, threshold: int) -> Any:
    """``size`` uint16 values: bfloat16 1.0 (0x3F80) where the draw is ``>= threshold``, else
    0; numba's kernel when numba is installed, else NumPy (the same bits)."""
    import numpy as np

    words = np.empty((size + 3) // 4, dtype=np.uint64)
    kernel = _kernel()
    if kernel is not None:
        kernel(words, seed, threshold)
    else:
        _numpy_words(words, seed, threshold)
    return words.view(np.uint16)[:size]


# SplitMix64's increment and multipliers
GOLDEN = 0x9E3779B97F4A7C15
MIX1 = 0xBF58476D1CE4E5B9
MIX2 = 0x94D049BB133111EB


def _numpy_words(out: Any, seed: int, threshold: int) -> None:
    """The mask words of :func:`_kernel`, vectorised with NumPy."""
    import numpy as np

    u64 = np.uint64
    z = np.arange(1, out.shape[0] + 1, dtype=u64)
    z *= u64(GOLDEN)
    z += u64(seed)
    z ^= z >> u64(30)
    z *= u64(MIX1)
    z ^= z >> u64(27)
    z *= u64(MIX2)
    z ^= z >> u64(31)
    draws = z.view(np.uint16)
    keep = (draws >= threshold).astype(np.uint16)
    keep *= BF16_ONE
    out.view(np.uint16)[:] = keep


@functools.cache
def _kernel() -> Any:
    """numba's compiled mask loop (:mod:`martlet_kernels._mask_kernel`), or None without numba."""
    try:
        from martlet_kernels._mask_kernel import fill_mask_words
    except ImportError:
        return None
    return fill_mask_words


@functools.cache
def _and_kernel(dtype: Any = torch.bfloat16) -> Any:
    """numba's compiled dropout passes for ``dtype`` (bfloat16: four values per 64-bit word,
    float32: two), ``(out_of_place, in_place)`` from :mod:`martlet_kernels._mask_kernel`, or
    None without numba."""
    try:
        from martlet_kernels import _mask_kernel as k
    except ImportError:
        return None
    if dtype == torch.float32:
        return k.and_mask_words32, k.and_mask_words32_inplace
    return k.and_mask_words, k.and_mask_words_inplace


def _threshold(p: float) -> int:
    return min(65536, max(0, round(p * 65536)))


def drop_probability(p: float) -> float:
    """The probability with which :func:`keep_mask` drops an element: ``p`` rounded to a
    multiple of 1/65536 (0.05 becomes 0.0500030518)."""
    return _threshold(p) / 65536


def warm_up() -> None:
    """Load (or compile, the first time) numba's mask kernels now, so that the first training
    step does not pay for it (~1 s)."""
    _mask_bits(8, 0, 1)
    for dtype in (torch.bfloat16, torch.float32):
        mask = DropMask((8,), 0.5, "cpu", dtype)
        mask.zero_dropped_(mask.dropped(torch.ones(8, dtype=dtype)))


@contextlib.contextmanager
def fast_dropouts(model: Any) -> Iterator[int]:
    """While active, the ``nn.Dropout`` modules of PEFT adapters (``lora_dropout``) in
    ``model`` are :class:`FastDropout`; yields how many were replaced, and puts the model's own
    back on exit."""
    replaced = []
    for module in model.modules():
        slots = getattr(module, "lora_dropout", None)
        if not isinstance(slots, torch.nn.ModuleDict):
            continue
        for name, dropout in list(slots.items()):
            if type(dropout) is torch.nn.Dropout and dropout.p > 0:
                slots[name] = FastDropout(dropout.p)
                replaced.append((slots, name, dropout))
    if replaced:
        warm_up()
    try:
        yield len(replaced)
    finally:
        for slots, name, dropout in replaced:
            slots[name] = dropout
