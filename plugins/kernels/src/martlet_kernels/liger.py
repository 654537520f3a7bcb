"""Liger-Kernel (Triton kernels for transformers models) as a kernel record, CUDA only.

``liger_kernel.transformers._apply_liger_kernel_to_instance`` patches a loaded model's modules
for its model type (RMSNorm, RoPE, SwiGLU, the fused linear cross-entropy, ...). Liger has no
way to undo it, so the patched layers stay after the run (the run saves its result from them;
the values are the model's own).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from martlet.errors import ConfigError


class LigerKernel:
    @contextlib.contextmanager
    def applied(self, model: Any, *, device: str, dtype: str) -> Iterator[int]:
        if device != "cuda":
            raise ConfigError(
                f"the liger kernel runs on CUDA, not on {device}",
                why="Liger-Kernel is written in Triton for NVIDIA (and ROCm) GPUs",
                fix="train on a CUDA device, or leave --kernels at auto",
            )
        from liger_kernel.transformers import _apply_liger_kernel_to_instance

        before = {name: type(m).forward for name, m in model.named_modules()}
        _apply_liger_kernel_to_instance(model=getattr(model, "base_model", model))
        after = {name: type(m).forward for name, m in model.named_modules()}
        yield sum(1 for name, forward in after.items() if before.get(name) is not forward)
