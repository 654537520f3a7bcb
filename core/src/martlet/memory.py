"""Activation memory: what a layer may tell the training loop about the tensors it produces.

:func:`derived` declares that a tensor is a cheap function of tensors autograd saves anyway;
a training loop that budgets activation memory (martlet-train's arena) may then keep the recipe
instead of the tensor and compute it again in the backward pass. Kernels call it; the loop
provides the implementation for the length of a forward pass (:func:`deriving`). Outside one it
does nothing. No torch import here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

_DERIVE: Callable[..., Any] | None = None


def derived(out: Any, compute: Callable[..., Any], *inputs: Any) -> Any:
    """Declare that ``out`` is ``compute(*inputs)`` (the same values again from the same
    inputs, under ``torch.no_grad()``); returns ``out``. Does nothing unless a training loop
    is :func:`deriving`."""
    derive = _DERIVE
    return out if derive is None else derive(out, compute, *inputs)


@contextlib.contextmanager
def deriving(derive: Callable[..., Any]) -> Iterator[None]:
    """While active, :func:`derived` declarations go to ``derive(out, compute, *inputs)``."""
    global _DERIVE
    previous, _DERIVE = _DERIVE, derive
    try:
        yield
    finally:
        _DERIVE = previous
