"""The kernels as :class:`martlet.interfaces.Kernel` implementations: each switches the layers
it supports for the length of a run and gives them back afterwards."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


class RmsNormKernel:
    """Llama-style RMSNorms: the compiled kernel where the weights are bfloat16 on the CPU
    (:mod:`martlet_kernels.cpu_kernels`), the lean PyTorch function for the rest
    (:mod:`martlet_kernels.lean_norm`)."""

    @contextlib.contextmanager
    def applied(self, model: Any, *, device: str, dtype: str) -> Iterator[int]:
        from martlet_kernels.cpu_kernels import kernels
        from martlet_kernels.lean_norm import lean_norms

        with kernels(model) as compiled, lean_norms(model) as lean:
            yield compiled + lean


class SwigluKernel:
    """Llama-style gated MLPs (:mod:`martlet_kernels.lean_mlp`)."""

    @contextlib.contextmanager
    def applied(self, model: Any, *, device: str, dtype: str) -> Iterator[int]:
        from martlet_kernels.lean_mlp import lean_mlps

        with lean_mlps(model) as count:
            yield count
