"""Linear layers with their weights packed once for the CPU's matrix units, for inference.

Decoding a token multiplies one row (or a few) by every weight matrix. PyTorch's bfloat16
``linear`` on a CPU converts the weight into oneDNN's blocked layout on each call, so a
decoding step spends most of its time re-reading and re-arranging weights: on SmolLM2-135M,
~23 ms of a 31 ms step (``bench/RESULTS.md``). :func:`packed_linears` packs each bfloat16
``nn.Linear`` weight of a model into that layout once (``torch.ops.mkldnn._reorder_linear_weight``,
what ``torch.compile`` does for frozen CPU models) and computes the layer with
``mkldnn._linear_pointwise``; the layer's own weight stays as it is (saving, merging and
adapters see it unchanged), at the cost of a second copy in memory. A call that needs
gradients, or whose input is not bfloat16 on the CPU, takes the layer's own forward.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from martlet_kernels.switching import switch, switched


def available() -> bool:
    """Whether this PyTorch build has oneDNN's packed linear (CPU builds with mkldnn)."""
    return bool(
        torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
        and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    )


def _packed_forward(self: Any, x: torch.Tensor) -> torch.Tensor:
    if (
        x.dtype != torch.bfloat16
        or x.device.type != "cpu"
        or type(x) is not torch.Tensor
        or (torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad))
        or self.weight.data_ptr() != self._martlet_packed_from
    ):
        return type(self).forward(self, x)
    return torch.ops.mkldnn._linear_pointwise(x, self._martlet_packed, self.bias, "none", [], "")


def _packable(module: Any) -> bool:
    weight = getattr(module, "weight", None)
    return (
        isinstance(module, torch.nn.Linear)
        and type(weight) is torch.nn.Parameter
        and type(weight.data) is torch.Tensor
        and weight.dtype == torch.bfloat16
        and weight.device.type == "cpu"
        and weight.dim() == 2
        and (module.bias is None or module.bias.dtype == torch.bfloat16)
    )


@contextlib.contextmanager
def packed_linears(model: Any) -> Iterator[int]:
    """While active, ``model``'s bfloat16 CPU ``nn.Linear`` layers compute with packed
    weights; yields how many, and drops the packed copies on exit."""
    modules = [m for m in model.modules() if _packable(m)] if available() else []
    with torch.no_grad():
        for module in modules:
            module._martlet_packed = torch.ops.mkldnn._reorder_linear_weight(
                module.weight.detach(), 1
            )
            module._martlet_packed_from = module.weight.data_ptr()  # a new weight: unpacked
    try:
        with switched(switch(modules, _packed_forward)) as count:
            yield count
    finally:
        for module in modules:
            vars(module).pop("_martlet_packed", None)
            vars(module).pop("_martlet_packed_from", None)
