"""Precision chosen from the hardware: what ``--mixed-precision auto`` and ``--torch-dtype auto``
become on the device a command runs on.

The decision is the accelerator record's: its ``preferred_dtype()`` names the fastest dtype the
device computes natively (``bfloat16`` on a CPU with AVX512-BF16 or AMX and on GPUs of compute
capability 8.0 and later, ``float16`` on older GPUs, ``float32`` otherwise). From it:

- mixed precision ``auto`` autocasts to that dtype (``fp16`` with a gradient scaler), or not at
  all where it is ``float32``;
- weights ``auto`` load in that dtype where they stay frozen (the base model of an adapter run,
  a reference or teacher model, inference) and in ``float32`` where they train (full
  fine-tuning keeps float32 master weights and autocasts the compute).

An explicit half dtype on a device that only emulates it still runs, with one warning that says
how much slower its matrix products measured here and what to pass instead.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

#: mixed-precision name <-> dtype name
MIXED = {"bf16": "bfloat16", "fp16": "float16"}
DTYPES = {v: k for k, v in MIXED.items()}


@dataclass(frozen=True)
class Precision:
    """The resolved precision of one command run."""

    device: str  #: the device type it was resolved for (``cpu``, ``cuda``, ...)
    native: str  #: the accelerator's preferred dtype
    mixed_precision: str  #: ``no``, ``bf16`` or ``fp16``
    torch_dtype: str  #: the dtype the model's weights load in
    frozen_dtype: str  #: the dtype of models that never train (reference, teacher)
    chosen: tuple[str, ...] = ()  #: which of the two were ``auto``

    def describe(self) -> str:
        """One line for the start of a run."""
        compute = MIXED.get(self.mixed_precision, self.torch_dtype)
        auto = " (auto)" if self.chosen else ""
        return (
            f"precision{auto}: {compute} compute, {self.torch_dtype} weights on {self.device} "
            f"({self.device} computes {self.native} natively)"
        )


def accelerator(device: str | None = None) -> Any:
    """The accelerator implementation for ``device`` (``cuda:1`` -> ``cuda``), or the first
    available non-CPU device kind when ``device`` is None, else the CPU's
    (:func:`martlet.devices.best`)."""
    from martlet.devices import best
    from martlet.manager import get_manager

    if device and device != "auto":
        return get_manager().registry.get("accelerators", device.split(":")[0]).load()()
    return best()[1]


def resolve(
    *,
    device: str | None = None,
    mixed_precision: str = "auto",
    torch_dtype: str = "auto",
    trains_weights: bool = False,
    inference: bool = False,
) -> Precision:
    """What ``auto`` means on ``device`` (None: the best available).

    Arguments:
        mixed_precision: ``auto``, ``no``, ``bf16`` or ``fp16`` (ignored with ``inference``).
        torch_dtype: ``auto`` or a dtype name for the weights.
        trains_weights: whether the model's own weights train (full fine-tuning): then
            ``auto`` weights stay float32 and only the compute is autocast.
        inference: no training: the weights load in the native dtype and nothing autocasts.
    """
    acc = accelerator(device)
    native = str(acc.preferred_dtype())
    half = native if native in DTYPES else None
    chosen = tuple(
        name
        for name, value in (("mixed_precision", mixed_precision), ("torch_dtype", torch_dtype))
        if value in ("auto", None)
    )
    if inference:
        mixed = "no"
    elif mixed_precision in ("auto", None):
        mixed = DTYPES[half] if half else "no"
    else:
        mixed = mixed_precision
    # frozen weights go half only where the device computes that half dtype natively (and, in
    # training, where the forward pass is autocast to it)
    frozen = half if half and (inference or MIXED.get(mixed) == half) else "float32"
    if torch_dtype not in ("auto", None):
        weights = torch_dtype
    elif inference or not trains_weights:
        weights = frozen
    else:
        weights = "float32"
    return Precision(acc.device_type, native, mixed, weights, frozen, chosen)


def emulation_warning(precision: Precision) -> str | None:
    """A one-line warning when the run computes in a half dtype its device does not multiply
    natively (e.g. bf16 on an AVX2-only CPU), with the slowdown measured here."""
    wanted = {MIXED.get(precision.mixed_precision), precision.torch_dtype} - {None, "float32"}
    slow = sorted(d for d in wanted if d != precision.native)
    if not slow:
        return None
    dtype = slow[0]
    factor = _slowdown(precision.device, dtype)
    measured = f"{factor:.0f}x slower than float32 here" if factor else "emulated here"
    return (
        f"warning: {dtype} on this {precision.device} is not native ({precision.device} computes "
        f"{precision.native} natively): its matrix products run {measured}; pass "
        "--mixed-precision auto --torch-dtype auto to choose from the hardware"
    )


def _slowdown(device: str, dtype: str, size: int = 192) -> float | None:
    """How many times slower a ``size``-square matrix product is in ``dtype`` than in float32
    on ``device`` (a few milliseconds to measure; None if it cannot be measured)."""
    try:
        import torch

        def seconds(dt: Any) -> float:
            a = torch.randn(size, size, device=device).to(dt)
            a @ a  # warm-up
            best = float("inf")
            for _ in range(3):
                start = time.perf_counter()
                (a @ a).sum().item()
                best = min(best, time.perf_counter() - start)
            return best

        return seconds(getattr(torch, dtype)) / max(seconds(torch.float32), 1e-9)
    except Exception:  # noqa: BLE001 - a hint, never a failure
        return None


def compute_dtype(x: Any) -> Any:
    """The dtype a matrix product of tensor ``x`` runs in: autocast's when it is on for ``x``'s
    device, else ``x``'s own. What a hand-written autograd function (a fused kernel) casts to,
    so it computes as the module it replaces would under the run's mixed precision."""
    import torch

    device = x.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return x.dtype
