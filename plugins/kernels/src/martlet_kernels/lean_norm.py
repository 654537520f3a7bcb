"""Llama-style RMSNorms whose output is recomputed instead of kept.

A decoder layer's two norms feed adapted projections (q, k and v; gate and up), which keep the
norm's output for their adapters' gradients, while the norm itself keeps its input: two tensors
of the model's width per token and norm, one of them cheap to compute from the other.
:class:`RMSNormFunction` computes what transformers' ``LlamaRMSNorm`` computes, operation for
operation (the same values), keeps its input and the per-row ``rsqrt`` only, and declares its
output derived (:func:`martlet.memory.derived`): within an activation budget the output is
computed again in the backward pass — one element-wise pass — instead of kept (~13% of a
Llama layer's saved bytes). :func:`lean_norms` switches every norm whose ``forward`` is
Llama's, word for word (Llama, Mistral, Qwen2/3, SmolLM3, ...), that the compiled bfloat16
kernel (:mod:`martlet_kernels.cpu_kernels`, which declares its output the same way) has not
taken, for as long as the training run lasts.

This module is imported only by a training run (torch loaded already).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from martlet.memory import derived

from martlet_kernels.switching import forward_is, switch, switched

#: the layer whose forward :class:`RMSNormFunction` (and the compiled bfloat16 kernel of
#: :mod:`martlet_kernels.cpu_kernels`) computes
LLAMA_NORM = "transformers.models.llama.modeling_llama:LlamaRMSNorm"


def inverse_rms(x: torch.Tensor, eps: float) -> torch.Tensor:
    """``rsqrt(mean(x^2) + eps)`` over the last dimension, in float32 (kept dimension)."""
    return torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + eps)


def normed(x: torch.Tensor, rstd: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``weight * (x * rstd)`` with the product cast back to ``x``'s dtype, as Llama does."""
    return weight * (x.float() * rstd).to(x.dtype)


class RMSNormFunction(torch.autograd.Function):
    """Llama's RMSNorm keeping ``x`` and the per-row ``rsqrt`` for the backward pass."""

    @staticmethod
    def forward(ctx, x, weight, eps):  # noqa: D102
        rstd = inverse_rms(x, eps)
        ctx.save_for_backward(x, weight, rstd)
        return derived(normed(x, rstd, weight), normed, x, rstd, weight)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        x, weight, rstd = ctx.saved_tensors
        x_hat = x.float() * rstd
        g = grad.float()
        grad_x = grad_weight = None
        if ctx.needs_input_grad[0]:
            gw = g * weight.float()
            grad_x = (rstd * (gw - x_hat * (gw * x_hat).mean(-1, keepdim=True))).to(x.dtype)
        if ctx.needs_input_grad[1]:
            rows = g * x_hat.to(x.dtype).float()
            grad_weight = rows.reshape(-1, rows.shape[-1]).sum(0).to(weight.dtype)
        return grad_x, grad_weight, None


def _lean_forward(self: Any, hidden_states: Any) -> Any:
    weight = self.weight
    if type(hidden_states) is not torch.Tensor or type(weight.data) is not torch.Tensor:
        return type(self).forward(self, hidden_states)  # a DTensor, fake or meta tensor
    return RMSNormFunction.apply(hidden_states, weight, float(self.variance_epsilon))


def llama_norms(model: Any) -> Iterator[Any]:
    """``model``'s RMSNorms whose ``forward`` is Llama's, word for word, not switched yet."""
    return (
        module
        for module in model.modules()
        if "forward" not in vars(module)
        and hasattr(module, "variance_epsilon")
        and isinstance(getattr(module, "weight", None), torch.Tensor)
        and module.weight.dim() == 1
        and forward_is(type(module), LLAMA_NORM)
    )


def use_lean_norms(model: Any) -> list[Any]:
    """Switch ``model``'s Llama-style RMSNorms to :class:`RMSNormFunction`; returns them."""
    return switch(llama_norms(model), _lean_forward)


def lean_norms(model: Any) -> contextlib.AbstractContextManager[int]:
    """While active, ``model``'s Llama-style RMSNorms keep less for the backward pass (yields
    how many were switched); afterwards their own forward again."""
    return switched(use_lean_norms(model))
