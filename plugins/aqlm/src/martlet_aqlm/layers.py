"""aqlm's ``QuantizedLinear`` as Martlet runs it: aqlm's own kernels on a GPU, its
dequantization kernel on the CPU.

On the CPU, aqlm 1.1.7 is wrong for 8-bit codebooks (1x8, 2x8 checkpoints). Its numba
lookup-table kernel adds into shared output elements from several threads without atomics, so
the outputs differ from run to run (aqlm issue #86; the tiny test model's logits came out
50-130 % off). Before the first product it permutes the layer's ``codes`` in place, even where
it then dequantizes (``out_group_size`` > 1) and reads them unpermuted, so those outputs are
wrong too, and ``save_pretrained`` afterwards writes a broken checkpoint. Its backward pass
reads the permuted codes and fails on a shape mismatch, so no LoRA can train. 16-bit
codebooks already use the dequantization kernel there. :func:`layer_class` makes every
configuration use it on the CPU: the weight is decoded from codes, codebooks and scales for
each product (``aqlm.inference_kernels.dequantization.dequantize_gemm``), and again in the
backward pass rather than kept.
"""

from __future__ import annotations

import functools
from typing import Any

from martlet.errors import MissingDependencyError, brief

#: the pip command for the aqlm package (what martlet-aqlm depends on)
INSTALL = 'pip install "aqlm[cpu]>=1.1.7,<1.2"'


def import_aqlm() -> Any:
    """The ``aqlm`` module; a MissingDependencyError saying what to install when it is absent."""
    try:
        import aqlm
    except ImportError as exc:
        raise MissingDependencyError(
            "the aqlm package is not installed",
            why=f"AQLM checkpoints run through its QuantizedLinear layers ({brief(exc)})",
            fix=f"{INSTALL} (or pip install martlet-aqlm, which depends on it)",
            cause=exc,
        ) from exc
    return aqlm


@functools.lru_cache(maxsize=1)
def layer_class() -> type:
    """A subclass of aqlm's ``QuantizedLinear`` (the same state dict; PEFT's ``dispatch_aqlm``
    adapts it) computing through dequantized weights on the CPU. It keeps the class name:
    PEFT recognises AQLM layers by it."""
    import_aqlm()
    from aqlm import QuantizedLinear

    class Layer(QuantizedLinear):
        def prepare_matmul_op(self, input: Any) -> None:
            if input.is_cuda:
                super().prepare_matmul_op(input)
                return
            self.gemv_op = self.gemm_op = _matmul()
            self.use_gemv_rule = _always

        def _apply(self, fn: Any, recurse: bool = True) -> Any:
            # aqlm picks its kernel for a device on the first forward: pick again after a move
            self.gemv_op = self.gemm_op = self.use_gemv_rule = None
            return super()._apply(fn, recurse)

    Layer.__module__ = __name__
    Layer.__name__ = Layer.__qualname__ = "QuantizedLinear"
    return Layer


def _always(input: Any) -> bool:
    return True


@functools.lru_cache(maxsize=1)
def _matmul() -> type:
    """``input @ W.T + bias`` with ``W`` decoded by aqlm's dequantization kernel, forward and
    backward (``grad @ W``: the same kernel on the transposed codes and codebooks)."""
    import torch
    from aqlm.inference_kernels.dequantization import dequantize_gemm

    class DequantizedMatmul(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, input: Any, codes: Any, codebooks: Any, scales: Any, bias: Any):
            ctx.save_for_backward(codes, codebooks, scales)
            return dequantize_gemm(input, codes, codebooks, scales, bias)

        @staticmethod
        def backward(ctx: Any, grad: Any):
            if not ctx.needs_input_grad[0]:
                return None, None, None, None, None
            codes, codebooks, scales = ctx.saved_tensors
            grad_input = dequantize_gemm(
                grad.contiguous(),
                codes.transpose(0, 1).contiguous(),
                codebooks.transpose(2, 3).contiguous(),
                scales.transpose(0, 1).transpose(2, 3).contiguous(),
                None,
            )
            return grad_input, None, None, None, None

    return DequantizedMatmul


def use_layer_class(model: Any) -> int:
    """Make every aqlm ``QuantizedLinear`` of ``model`` an :func:`layer_class` layer (the
    same object, its class swapped); returns how many layers there are."""
    from aqlm import QuantizedLinear

    cls = layer_class()
    count = 0
    for module in model.modules():
        if type(module) is QuantizedLinear:  # as loaded: aqlm's CPU kernel never ran on it
            module.__class__ = cls
            module.gemv_op = module.gemm_op = module.use_gemv_rule = None
        count += isinstance(module, QuantizedLinear)
    return count


def __getattr__(name: str) -> Any:
    # where pickle finds the layer class (``martlet_aqlm.layers.QuantizedLinear``)
    if name == "QuantizedLinear":
        return layer_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
