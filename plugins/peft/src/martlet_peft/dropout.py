"""Adapter dropout with a faster random mask on the CPU.

LoRA's dropout draws a fresh mask the size of each adapted layer's input, for every adapted
layer and step. On a CPU, PyTorch's ``bernoulli_`` makes these masks at ~5 ns per element and
was a fifth of a LoRA training step on SmolLM2-135M (``bench/RESULTS.md``). NumPy's PCG64
draws them about four times faster. :class:`FastDropout` is ``nn.Dropout`` with the mask drawn
by NumPy from a seed taken from torch's default generator, so ``torch.manual_seed`` still
fixes every mask and a resumed run (torch's RNG state restored) draws the same masks as an
uninterrupted one. Off the CPU it is ``nn.Dropout``.
"""

from __future__ import annotations

from typing import Any

import torch

_SEED_HIGH = 2**62


class FastDropout(torch.nn.Dropout):
    """``nn.Dropout(p)`` whose CPU mask comes from NumPy's PCG64 (same distribution)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0 or x.device.type != "cpu" or self.inplace:
            return super().forward(x)
        if self.p == 1.0:
            return x * 0.0
        import numpy as np

        seed = int(torch.randint(0, _SEED_HIGH, (1,)))  # from torch's generator: reproducible
        uniform = np.random.default_rng(seed).random(tuple(x.shape), dtype=np.float32)
        keep = torch.from_numpy(uniform >= self.p)
        return x * keep.to(x.dtype).mul_(1.0 / (1.0 - self.p))


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
