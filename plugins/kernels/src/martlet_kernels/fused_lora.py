"""LoRA's forward and backward as one function per adapted layer.

PEFT computes ``base(x) + lora_B(lora_A(dropout(x))) * scaling`` as separate modules: the
autograd graph of each adapted layer holds a cast of ``x`` to the adapter's dtype (fp32 under
bf16 autocast, then back to bf16 for the product), the dropout, two rank-r products, a scaling
and an addition, each with its own backward node. On a CPU these small operations are a
noticeable part of a training step (``bench/RESULTS.md``). :class:`LoraLinearFunction` computes
the same value with the layer's large product, the adapter's rank-r product added to its output
(``addmm``), and a hand-written backward pass that does the same for the input gradient. For
the backward pass it keeps the input in the compute dtype (one tensor for the layers that read
the same input: q, k and v; gate and up) and the rank-r activations, instead of a dropped-out
copy of ``x`` per layer in the adapter's dtype; the dropout mask is never stored on the CPU: a
:class:`~martlet_kernels.dropout.DropMask` is a seed, and the dropped elements are cleared from
the input (forward, and again for the adapter's gradient) and from the adapter's share of the
input gradient (backward) — one compiled pass each for bfloat16.

:func:`fused_lora` switches a PEFT model's plain LoRA layers (one active adapter, no DoRA or
other variant, an ``nn.Linear`` base) to it. Anything else — adapters disabled or merged,
mixed-adapter batches, several active adapters — still goes through PEFT's own forward, so
saving, merging and ``disable_adapter()`` behave as before. Dropout masks come from the stream
of :func:`martlet_kernels.dropout.keep_mask`, as :class:`~martlet_kernels.dropout.FastDropout` draws
them, so a fused model and an unfused one with the ``lora-dropout`` kernel drop the same
elements from the same seed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from martlet.precision import compute_dtype

from martlet_kernels.dropout import DropMask, drop_probability
from martlet_kernels.switching import switch, switched


class LoraLinearFunction(torch.autograd.Function):
    """``x @ W.T + bias + scaling * dropout(x) @ A.T @ B.T`` with a frozen ``W``; ``mask`` is
    the dropout's :class:`~martlet_kernels.dropout.DropMask` (elements it drops are 0 in
    ``dropout(x)``, the others unscaled) or ``None`` (no dropout)."""

    @staticmethod
    def forward(ctx, x, weight, bias, lora_a, lora_b, scaling, mask, dtype):  # noqa: D102
        shape = x.shape
        x2 = x.reshape(-1, shape[-1]).to(dtype)
        w, a, b = weight.to(dtype), lora_a.to(dtype), lora_b.to(dtype)
        # out of place: selective activation checkpointing keeps some of these outputs and
        # refuses tensors that were changed after it kept them
        y = torch.mm(x2, w.t()) if bias is None else torch.addmm(bias.to(dtype), x2, w.t())
        dropped = x2 if mask is None else mask.dropped(x2.contiguous())
        h = torch.mm(dropped, a.t())
        y = torch.addmm(y, h, b.t(), alpha=scaling)
        # the input itself is kept (one tensor for the layers that read it: q, k and v; gate
        # and up) and the adapter's gradient redraws the dropped-out copy from the mask's seed;
        # the input's gradient needs only the mask
        ctx.save_for_backward(x2, w, a, b, h)
        ctx.mask = mask
        ctx.meta = (
            shape,
            scaling,
            x.dtype,
            lora_a.dtype,
            lora_b.dtype,
            getattr(bias, "dtype", None),
        )
        return y.reshape(*shape[:-1], y.shape[-1])

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        x2, w, a, b, h = ctx.saved_tensors
        mask = ctx.mask
        shape, scaling, x_dtype, a_dtype, b_dtype, bias_dtype = ctx.meta
        g = grad.reshape(-1, grad.shape[-1]).to(w.dtype)
        gh = torch.mm(g, b).mul_(scaling)
        grad_a = grad_b = grad_x = grad_bias = None
        if ctx.needs_input_grad[2]:  # a base bias left trainable (PEFT's bias="all")
            grad_bias = g.sum(0).to(bias_dtype)
        if ctx.needs_input_grad[4]:
            grad_b = torch.mm(g.t(), h).mul_(scaling).to(b_dtype)
        if ctx.needs_input_grad[3]:
            dropped = x2 if mask is None else mask.dropped(x2.contiguous())
            grad_a = torch.mm(gh.t(), dropped).to(a_dtype)
        if ctx.needs_input_grad[0]:
            if mask is None:
                grad_x = torch.mm(g, w).addmm_(gh, a)
            else:  # the adapter's share reaches only the kept elements
                grad_x = torch.addmm(mask.zero_dropped_(torch.mm(gh, a)), g, w)
            grad_x = grad_x.reshape(shape).to(x_dtype)
        return grad_x, None, grad_bias, grad_a, grad_b, None, None, None


def _fused_forward(self: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    """The forward of a fused LoRA layer: PEFT's own where the fused one does not apply."""
    adapters = self.active_adapters
    if (
        args
        or kwargs
        or self.disable_adapters
        or self.merged
        or len(adapters) != 1
        or adapters[0] not in self.lora_A
        or adapters[0] in self.lora_variant
        or self.lora_B[adapters[0]].bias is not None
        or self.base_layer.weight.requires_grad  # the function leaves the base weight frozen
        # DeepSpeed ZeRO-3 gathers a partitioned weight in its own module's forward hooks,
        # which the fused function does not call
        or hasattr(self.base_layer.weight, "ds_id")
    ):
        return type(self).forward(self, x, *args, **kwargs)
    name = adapters[0]
    base = self.base_layer
    dropout = self.lora_dropout[name]
    p = float(getattr(dropout, "p", 0.0))
    scaling = float(self.scaling[name])
    mask = None
    dtype = compute_dtype(x)
    if self.training and p > 0.0:
        # inverted dropout: elements cleared by the mask, 1 / (1 - p) folded into the
        # adapter's scaling
        mask = DropMask(tuple(x.shape), p, x.device, dtype)
        dropped = drop_probability(p)
        scaling = scaling / (1.0 - dropped) if dropped < 1.0 else 0.0
    return LoraLinearFunction.apply(
        x,
        base.weight,
        base.bias,
        self.lora_A[name].weight,
        self.lora_B[name].weight,
        scaling,
        mask,
        dtype,
    )


def fusable(module: Any) -> bool:
    """Whether ``module`` is a plain PEFT LoRA layer over a frozen ``nn.Linear``."""
    from peft.tuners.lora.layer import Linear

    return (
        type(module) is Linear
        and type(module.base_layer) is torch.nn.Linear
        and not module.fan_in_fan_out
        and not module.base_layer.weight.requires_grad
    )


def fuse_lora(model: Any) -> list[Any]:
    """Route the plain LoRA layers of ``model`` through :class:`LoraLinearFunction`; returns
    the switched layers (:func:`martlet_kernels.switching.restore` gives them their own
    forward back)."""
    return switch([m for m in model.modules() if fusable(m)], _fused_forward)


@contextlib.contextmanager
def fused_lora(model: Any) -> Iterator[int]:
    """While active, ``model``'s plain LoRA layers are fused (:func:`fuse_lora`); yields how
    many, and gives them PEFT's forward back on exit."""
    with switched(fuse_lora(model)) as count:
        yield count
