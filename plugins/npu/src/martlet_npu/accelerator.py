"""The `npu` accelerator: Ascend NPUs through torch_npu.

``import torch_npu`` is what gives torch its ``npu`` device type and the ``torch.npu`` module
(``is_available``, ``device_count``, ``mem_get_info``, ``synchronize``, ... as in
``torch.cuda``); it happens when the device is first asked about, never when Martlet starts.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from martlet.errors import MartletError


def npu() -> Any:
    """``torch.npu``, after importing torch_npu (which adds it)."""
    try:
        import torch_npu  # noqa: F401 - registers the "npu" device type and torch.npu
    except Exception as exc:  # ImportError, or OSError from a CANN library not found
        raise MartletError(
            "torch_npu is installed but cannot be imported",
            why=f"{type(exc).__name__}: {exc}",
            fix="load the CANN toolkit's environment first "
            "(source /usr/local/Ascend/ascend-toolkit/set_env.sh) and check that torch_npu's "
            "version matches your torch and CANN versions",
            cause=exc,
        ) from exc
    return torch.npu


class NpuAccelerator:
    """Ascend NPUs: bfloat16 where the chip has it (Atlas A2/A3, the 910B and later), else
    float16; ``hccl`` between processes."""

    device_type = "npu"

    def prepare(self) -> None:
        """Import torch_npu before anything runs, and give a launched process (torchrun sets
        ``LOCAL_RANK``) its own NPU as the current device, as HCCL expects."""
        module = npu()
        local_rank = os.environ.get("LOCAL_RANK")
        if local_rank is not None and int(local_rank) < self.device_count():
            module.set_device(int(local_rank))

    def is_available(self) -> bool:
        return bool(npu().is_available())

    def device_count(self) -> int:
        return int(npu().device_count()) if self.is_available() else 0

    def device(self, index: int = 0) -> torch.device:
        npu()  # torch.device("npu") is only understood once torch_npu is imported
        return torch.device(self.device_type, index)

    def bf16(self) -> bool:
        """Whether the NPU computes in bfloat16 (the first-generation 910 does not)."""
        module = npu()
        check = getattr(module, "is_bf16_supported", None)
        return bool(self.is_available() and check is not None and check())

    def supported_dtypes(self) -> list[str]:
        return ["float32", "bfloat16", "float16"] if self.bf16() else ["float32", "float16"]

    def preferred_dtype(self) -> str:
        return "bfloat16" if self.bf16() else "float16"

    def memory_stats(self, index: int = 0) -> dict[str, int]:
        module = npu()
        free, total = module.mem_get_info(index)
        return {
            "total": int(total),
            "free": int(free),
            "allocated": int(module.memory_allocated(index)),
        }

    def distributed_backend(self) -> str:
        return "hccl"  # Huawei Collective Communication Library, registered by torch_npu

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)
        if self.is_available():
            npu().manual_seed_all(seed)

    def synchronize(self) -> None:
        if self.is_available():
            npu().synchronize()
