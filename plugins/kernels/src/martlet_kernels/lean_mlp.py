"""Gated MLPs that keep less for the backward pass.

Llama's MLP computes ``down(silu(gate(x)) * up(x))``; autograd keeps ``gate(x)`` for the SiLU's
gradient and both ``silu(gate(x))`` and ``up(x)`` for the product's: three intermediate-width
tensors per token and layer, the largest share of a decoder layer's activations.
:class:`SwiGLUFunction` keeps ``gate(x)`` and ``up(x)`` only and recomputes the SiLU in the
backward pass (one element-wise pass): a sixth less activation memory per layer for the same
values. Within an activation budget its output — the down projection's input, which that layer
keeps for its adapter's gradient — is declared derived (:func:`martlet.memory.derived`),
so it too is computed again from ``gate`` and ``up`` instead of kept: another sixth.
:func:`lean_mlps` switches every MLP whose ``forward`` is Llama's, word for word (Llama,
Mistral, Qwen2/3, SmolLM3, ...; checked against the source, not by name) with a SiLU activation,
for as long as the training run lasts.

This module is imported only by a training run (torch loaded already).
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from martlet.memory import derived

from martlet_kernels.switching import forward_is, switch, switched


def swiglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """``silu(gate) * up``, the value :class:`SwiGLUFunction` computes."""
    return torch.nn.functional.silu(gate) * up


class SwiGLUFunction(torch.autograd.Function):
    """``silu(gate) * up``, keeping only ``gate`` and ``up`` for the backward pass."""

    @staticmethod
    def forward(ctx, gate, up):  # noqa: D102
        ctx.save_for_backward(gate, up)
        # the down projection keeps its input for its adapter's gradient: within an
        # activation budget, that is computed again from gate and up instead of kept
        return derived(swiglu(gate, up), swiglu, gate, up)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        gate, up = ctx.saved_tensors
        # in float32 for half inputs, as PyTorch's own SiLU gradient computes
        g, a, b = grad.float(), gate.float(), up.float()
        sigmoid = torch.sigmoid(a)
        silu = a * sigmoid
        grad_up = (g * silu).to(up.dtype) if ctx.needs_input_grad[1] else None
        grad_gate = None
        if ctx.needs_input_grad[0]:
            # d silu / d a = sigmoid * (1 + a * (1 - sigmoid))
            grad_gate = (g * b * sigmoid * (1 + a * (1 - sigmoid))).to(gate.dtype)
        return grad_gate, grad_up


#: the layer whose forward :func:`_lean_forward` computes
LLAMA_MLP = "transformers.models.llama.modeling_llama:LlamaMLP"


def _is_silu(act: Any) -> bool:
    from transformers.activations import SiLUActivation

    return isinstance(act, (torch.nn.SiLU, SiLUActivation))


def _lean_forward(self: Any, x: Any) -> Any:
    return self.down_proj(SwiGLUFunction.apply(self.gate_proj(x), self.up_proj(x)))


def use_lean_mlps(model: Any) -> list[Any]:
    """Switch ``model``'s Llama-style SiLU MLPs to :class:`SwiGLUFunction`; returns them."""
    return switch(
        (
            module
            for module in model.modules()
            if "forward" not in vars(module)
            and forward_is(type(module), LLAMA_MLP)
            and _is_silu(getattr(module, "act_fn", None))
        ),
        _lean_forward,
    )


def lean_mlps(model: Any) -> contextlib.AbstractContextManager[int]:
    """While active, ``model``'s Llama-style MLPs keep less for the backward pass (yields how
    many were switched); afterwards their own forward again."""
    return switched(use_lean_mlps(model))
