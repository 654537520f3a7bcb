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


class LinearCrossEntropyKernel:
    """The output layer and the cross-entropy fused chunk by chunk
    (:mod:`martlet_kernels.linear_ce`), offered to the ``sft``/``pt`` loss as the
    ``output_cross_entropy`` operation for models whose logits are the layer's output."""

    @contextlib.contextmanager
    def applied(self, model: Any, *, device: str, dtype: str) -> Iterator[int]:
        from martlet.kernels import provide

        from martlet_kernels.linear_ce import fusable_head, output_cross_entropy

        head = fusable_head(model)
        if head is None:
            yield 0
            return
        with provide(model, "output_cross_entropy", output_cross_entropy(head)):
            yield 1


class PackedAttentionKernel:
    """Attention segment by segment inside packed rows (:mod:`martlet_kernels.packed_attention`),
    offered as the ``segment_attention`` operation: the training job switches the model to it
    only while its batches are packed (padded batches need their mask)."""

    @contextlib.contextmanager
    def applied(self, model: Any, *, device: str, dtype: str) -> Iterator[int]:
        from martlet.kernels import provide

        from martlet_kernels.packed_attention import switchable, switched

        if not switchable(model):
            yield 0
            return
        with provide(model, "segment_attention", switched):
            yield 0  # no layer switched until the job asks


class LoraDropoutKernel:
    """LoRA adapters' dropout with masks drawn by a compiled generator on the CPU
    (:mod:`martlet_kernels.dropout`)."""

    @contextlib.contextmanager
    def applied(self, model: Any, *, device: str, dtype: str) -> Iterator[int]:
        from martlet_kernels.dropout import fast_dropouts

        with fast_dropouts(model) as count:
            yield count


class FusedLoraKernel:
    """Plain LoRA layers as one autograd function each (:mod:`martlet_kernels.fused_lora`)."""

    @contextlib.contextmanager
    def applied(self, model: Any, *, device: str, dtype: str) -> Iterator[int]:
        from martlet_kernels.fused_lora import fused_lora

        with fused_lora(model) as count:
            yield count


class PackedLinearKernel:
    """bfloat16 linear layers with weights packed once for oneDNN, for inference on the CPU
    (:mod:`martlet_kernels.packed_linear`)."""

    @contextlib.contextmanager
    def applied(self, model: Any, *, device: str, dtype: str) -> Iterator[int]:
        from martlet_kernels.packed_linear import packed_linears

        with packed_linears(model) as count:
            yield count
