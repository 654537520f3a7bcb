"""Adapter dropout with a faster random mask on the CPU.

LoRA's dropout draws a fresh mask the size of each adapted layer's input, for every adapted
layer and step. On a CPU, PyTorch's ``bernoulli_`` makes these masks at ~5 ns per element and
was a fifth of a LoRA training step on SmolLM2-135M (``bench/RESULTS.md``). :func:`keep_mask`
takes 16-bit draws from NumPy's PCG64 raw output instead (~1 ns per element with the compare
and the bfloat16 0/1 mask), seeded from torch's default generator, so ``torch.manual_seed``
still fixes every mask and a resumed run (torch's RNG state restored) or a replayed
checkpointed forward draws the same masks. :class:`FastDropout` is ``nn.Dropout`` with that
mask (the fused LoRA layers of :mod:`martlet_peft.fused` use it directly); off the CPU it is
``nn.Dropout``.
"""

from __future__ import annotations

import math
from typing import Any

import torch

_SEED_HIGH = 2**62
_BF16_ONE = 0x3F80


class FastDropout(torch.nn.Dropout):
    """``nn.Dropout(p)`` whose CPU mask comes from NumPy's PCG64 (same distribution)."""

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

    The bits come from NumPy's PCG64 (``random_raw``: four 16-bit draws per 64-bit word), seeded
    from torch's default generator, so ``torch.manual_seed`` and a restored RNG state fix every
    mask. An element is dropped when its 16-bit draw is below ``round(p * 65536)``. Off the
    CPU the mask is drawn on the device by torch (its generator, the same probability).
    """
    if torch.device(device).type != "cpu":
        uniform = torch.rand(shape, device=device)
        return (uniform >= drop_probability(p)).to(dtype)
    import numpy as np

    size = math.prod(shape)
    seed = int(torch.randint(0, _SEED_HIGH, (1,)))
    words = np.random.PCG64(seed).random_raw((size + 3) // 4)
    draws = words.view(np.uint16)[:size]
    keep = (draws >= _threshold(p)).astype(np.uint16)
    keep *= _BF16_ONE  # the bit pattern of bfloat16 1.0: a 0/1 mask in bfloat16 without a cast
    mask = torch.from_numpy(keep).view(torch.bfloat16).reshape(shape)
    return mask.to(device=device, dtype=dtype)


def _threshold(p: float) -> int:
    return min(65536, max(0, round(p * 65536)))


def drop_probability(p: float) -> float:
    """The probability with which :func:`keep_mask` drops an element: ``p`` rounded to a
    multiple of 1/65536 (0.05 becomes 0.0500030518)."""
    return _threshold(p) / 65536


def use_fast_dropout(model: Any) -> int:
    """Replace the ``nn.Dropout`` modules of PEFT adapters (``lora_dropout``) in ``model`` by
    :class:`FastDropout`; returns how many were replaced."""
    replaced = 0
    for module in model.modules():
        slots = getattr(module, "lora_dropout", None)
        if not isinstance(slots, torch.nn.ModuleDict):
            continue
        for name, dropout in list(slots.items()):
            if type(dropout) is torch.nn.Dropout and dropout.p > 0:
                slots[name] = FastDropout(dropout.p)
                replaced += 1
    return replaced
