"""A 4-bit layer whose inference forwards run bitsandbytes' fused bf16 CPU kernel on a
repacked copy of its weights (see :mod:`martlet_bnb.quantizer`). Imports bitsandbytes and torch:
imported only by :func:`martlet_bnb.quantizer.prepare_layers`."""

from __future__ import annotations

import copy
from typing import Any

import torch

from martlet_bnb.quantizer import import_bitsandbytes

bnb = import_bitsandbytes()


class FusedCpuLinear4bit(bnb.nn.Linear4bit):
    """``Linear4bit`` whose inference forwards in bfloat16 on the CPU (eval mode, an input
    without gradient) run the fused kernel on a repacked copy of the weights, made on first use
    and remade if the weights change. Everything else — training, gradients, other compute
    dtypes, saving — is ``Linear4bit``'s exact path on the untouched weights and scales."""

    def forward(self, x: Any) -> Any:
        if (
            x.device.type != "cpu"
            or self.training
            or x.requires_grad
            or self.compute_dtype != torch.bfloat16
            or self.weight.device.type != "cpu"
        ):
            return super().forward(x)
        packed, state = self._packed()
        out = bnb.functional.gemv_4bit(x.to(torch.bfloat16), packed, state=state)
        if self.bias is not None:
            out = out + self.bias.to(out.dtype)
        return out.to(x.dtype)

    def _packed(self) -> tuple[Any, Any]:
        from bitsandbytes.functional import _convert_weight_packed_for_cpu

        key = (self.weight.data_ptr(), id(self.weight.quant_state))
        cached = self.__dict__.get("_martlet_packed")
        if cached is None or cached[0] != key:
            state = copy.deepcopy(self.weight.quant_state)  # packing changes the state it gets
            weight, state = _convert_weight_packed_for_cpu(self.weight.data, state)
            cached = self.__dict__["_martlet_packed"] = (key, weight, state)
        return cached[1], cached[2]

    def packed_bytes(self) -> int:
        """Bytes the repacked copy holds (0 before the first inference forward)."""
        cached = self.__dict__.get("_martlet_packed")
        if cached is None:
            return 0
        weight, state = cached[1], cached[2]
        return weight.numel() * weight.element_size() + state.absmax.numel() * 2
