"""Compiled CPU kernels for the element-wise layers of a bfloat16 training step.

PyTorch runs Llama's RMSNorm as a chain of operators — a cast to float32, a square, a mean,
a reciprocal square root, two products and two casts — each a pass over the hidden states
with its own autograd node, and its backward pass as a longer chain; on a CPU that is ~10 ms
per norm and step for four 512-token rows, ~5% of a packed LoRA step (``bench/RESULTS.md``).
:class:`RMSNormFunction` computes the same forward (the same two bfloat16 roundings) and its
gradients in one compiled pass each (numba, :mod:`martlet_kernels._norm_kernel`), row by row in
float32.

:func:`use_cpu_kernels` switches the RMSNorm modules of a model whose ``forward`` is Llama's
(Llama, Mistral, Mixtral, Qwen2/3 and their MoE variants, Phi-3, SmolLM3, Granite, GLM,
DeepSeek-V3, ... — checked against the source of ``LlamaRMSNorm.forward``, not by name) to it;
each call still takes the module's own forward unless its input and weight are bfloat16 on
the CPU. :func:`kernels` is the context manager the ``rms-norm`` kernel enters. Without numba
nothing is switched.

This module is imported only by a training run (torch loaded already); numba when a kernel
is first needed.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from martlet.memory import derived

from martlet_kernels.lean_norm import llama_norms
from martlet_kernels.switching import switch, switched


@functools.cache
def _compiled() -> Any:
    """numba's kernels module, or None without numba."""
    try:
        from martlet_kernels import _norm_kernel
    except ImportError:
        return None
    return _norm_kernel


def _bits(tensor: torch.Tensor) -> np.ndarray:
    """A bfloat16 tensor's storage as a NumPy uint16 array (no copy)."""
    return tensor.view(torch.int16).numpy().view(np.uint16)


class RMSNormFunction(torch.autograd.Function):
    """``weight * bf16(x * rsqrt(mean(x^2) + eps))`` for bfloat16 ``x`` and ``weight``,
    forward and backward in one compiled pass each."""

    @staticmethod
    def forward(ctx, x, weight, eps):  # noqa: D102
        shape = x.shape
        rows = x.reshape(-1, shape[-1]).contiguous()
        weight = weight.contiguous()
        out, rstd = _forward(rows, weight, eps)
        ctx.save_for_backward(rows, weight, rstd)
        # within an activation budget the layers it feeds do not keep its output: computed
        # again from rows (kept here anyway) in the backward pass
        return derived(out, functools.partial(_normed, eps=eps), rows, weight).view(shape)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        rows, weight, rstd = ctx.saved_tensors
        grad_rows = grad.reshape(rows.shape).to(torch.bfloat16).contiguous()
        grad_x = torch.empty_like(rows)
        need_weight = ctx.needs_input_grad[1]
        grad_weight = torch.zeros(rows.shape[1] if need_weight else 0)
        _compiled().rms_norm_backward(
            _bits(rows),
            _bits(weight),
            _bits(grad_rows),
            rstd.numpy(),
            _bits(grad_x),
            grad_weight.numpy(),
        )
        return (
            grad_x.view(grad.shape),
            grad_weight.to(weight.dtype) if need_weight else None,
            None,
        )


def _forward(rows: Any, weight: Any, eps: float) -> tuple[Any, Any]:
    """The compiled forward pass over ``rows`` (2-d, contiguous): ``(out, rstd)``."""
    out = torch.empty_like(rows)
    rstd = torch.empty(rows.shape[0], dtype=torch.float32)
    _compiled().rms_norm_forward(_bits(rows), _bits(weight), eps, _bits(out), rstd.numpy())
    return out, rstd


def _normed(rows: Any, weight: Any, eps: float) -> Any:
    """:class:`RMSNormFunction`'s output for ``rows`` again (its derived recipe)."""
    return _forward(rows, weight, eps)[0]


def rms_norm(x: Any, weight: Any, eps: float) -> Any:
    """Llama's RMSNorm of bfloat16 ``x`` with bfloat16 ``weight`` on the CPU, through the
    compiled kernels (numba must be installed)."""
    return RMSNormFunction.apply(x, weight, float(eps))


def _norm_forward(self: Any, hidden_states: Any) -> Any:
    weight = self.weight
    if (
        type(hidden_states) is torch.Tensor  # not a DTensor, fake or meta tensor
        and type(weight.data) is torch.Tensor
        and hidden_states.dtype == torch.bfloat16
        and weight.dtype == torch.bfloat16
        and hidden_states.device.type == "cpu"
        and weight.device.type == "cpu"
        and weight.dim() == 1
        and hidden_states.shape[-1] == weight.shape[0]
    ):
        return rms_norm(hidden_states, weight, self.variance_epsilon)
    return type(self).forward(self, hidden_states)


def use_cpu_kernels(model: Any) -> list[Any]:
    """Route the Llama-style RMSNorm modules of ``model`` whose weights are bfloat16 on the CPU
    through :func:`rms_norm`; returns the switched modules (empty without numba, and for other
    dtypes, which never load numba: ~90 MB less on the float32 path)."""
    candidates = [
        module
        for module in llama_norms(model)
        if module.weight.dtype == torch.bfloat16 and module.weight.device.type == "cpu"
    ]
    if not candidates or _compiled() is None:
        return []
    for module in model.modules():
        # transformers' hub kernels replace the forward of every decorated layer at each
        # model.train()/eval(): switched off here, or they would undo these switches
        if getattr(module, "use_kernels", False) is True:
            module.use_kernels = False
    return switch(candidates, _norm_forward)


def _warm_up() -> None:
    """Load (or compile, the first time) the kernels before the first training step."""
    x = torch.ones(2, 4, dtype=torch.bfloat16, requires_grad=True)
    rms_norm(x, torch.ones(4, dtype=torch.bfloat16), 1e-6).sum().backward()


@contextlib.contextmanager
def kernels(model: Any, enabled: bool = True) -> Iterator[int]:
    """While active, ``model``'s supported layers use the compiled CPU kernels (yields how
    many were switched); afterwards their own forward again."""
    modules = use_cpu_kernels(model) if enabled else []
    if modules:
        _warm_up()
    with switched(modules) as count:
        yield count
