"""The accelerator implementations. torch is imported here, never by the plugin module."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch


class TorchAccelerator:
    """What the device kinds share; subclasses name their ``torch`` module."""

    device_type = ""

    def _module(self) -> Any:
        return getattr(torch, self.device_type, None)

    def is_available(self) -> bool:
        module = self._module()
        return bool(module is not None and module.is_available())

    def device_count(self) -> int:
        return int(self._module().device_count()) if self.is_available() else 0

    def device(self, index: int = 0) -> torch.device:
        return torch.device(self.device_type, index)

    def supported_dtypes(self) -> list[str]:
        return ["float32", "bfloat16", "float16"]

    def preferred_dtype(self) -> str:
        return "bfloat16" if "bfloat16" in self.supported_dtypes() else "float32"

    def memory_stats(self, index: int = 0) -> dict[str, int]:
        free, total = self._module().mem_get_info(index)
        stats = {"total": int(total), "free": int(free)}
        if hasattr(self._module(), "memory_allocated"):
            stats["allocated"] = int(self._module().memory_allocated(index))
        return stats

    def distributed_backend(self) -> str:
        return "gloo"

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)  # seeds every device kind's default generators too

    def synchronize(self) -> None:
        if self.is_available():
            self._module().synchronize()


class CpuAccelerator(TorchAccelerator):
    """The host CPU: always available, one device."""

    device_type = "cpu"

    def is_available(self) -> bool:
        return True

    def device_count(self) -> int:
        return 1

    def device(self, index: int = 0) -> torch.device:
        return torch.device("cpu")

    def fast_bf16(self) -> bool:
        """Whether the CPU multiplies bf16 matrices natively (AVX512-BF16 or AMX); elsewhere
        PyTorch emulates them, over a hundred times slower than float32.

        ``MARTLET_CPU_BF16=1`` (or ``0``) makes the CPU report native bf16 (or none) whatever it
        has: for tests of both paths on either kind of CPU.
        """
        forced = os.environ.get("MARTLET_CPU_BF16", "").strip().lower()
        if forced in ("1", "true", "yes", "native"):
            return True
        if forced in ("0", "false", "no", "none"):
            return False
        return bool(NATIVE_BF16_FLAGS & _cpu_flags())

    def preferred_dtype(self) -> str:
        return "bfloat16" if self.fast_bf16() else "float32"

    def memory_stats(self, index: int = 0) -> dict[str, int]:
        info = {}
        try:
            for line in Path("/proc/meminfo").read_text().splitlines():
                key, _, value = line.partition(":")
                if key in ("MemTotal", "MemAvailable"):
                    info[key] = int(value.split()[0]) * 1024
            return {"total": info["MemTotal"], "free": info["MemAvailable"]}
        except (OSError, KeyError):
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
            free = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
            return {"total": int(total), "free": int(free)}

    def synchronize(self) -> None:
        pass


class CudaAccelerator(TorchAccelerator):
    """NVIDIA (or ROCm) GPUs."""

    device_type = "cuda"

    def supported_dtypes(self) -> list[str]:
        dtypes = ["float32", "float16"]
        if self.is_available() and torch.cuda.is_bf16_supported():
            dtypes.insert(1, "bfloat16")
        return dtypes

    def preferred_dtype(self) -> str:
        """bfloat16 where the GPU has bf16 tensor cores (compute capability 8.0 and later),
        float16 (trained with a gradient scaler) on older GPUs."""
        if self.is_available() and torch.cuda.is_bf16_supported(including_emulation=False):
            return "bfloat16"
        return "float16"

    def distributed_backend(self) -> str:
        return "nccl"


class MpsAccelerator(TorchAccelerator):
    """Apple-silicon GPUs."""

    device_type = "mps"

    def _module(self) -> Any:
        return torch.backends.mps

    def device_count(self) -> int:
        return 1 if self.is_available() else 0

    def device(self, index: int = 0) -> torch.device:
        return torch.device("mps")

    def supported_dtypes(self) -> list[str]:
        return ["float32", "float16", "bfloat16"]

    def preferred_dtype(self) -> str:
        return "float16"

    def memory_stats(self, index: int = 0) -> dict[str, int]:
        total = int(torch.mps.recommended_max_memory())
        allocated = int(torch.mps.driver_allocated_memory())
        return {"total": total, "free": max(total - allocated, 0), "allocated": allocated}

    def synchronize(self) -> None:
        if self.is_available():
            torch.mps.synchronize()


class XpuAccelerator(TorchAccelerator):
    """Intel GPUs."""

    device_type = "xpu"

    def distributed_backend(self) -> str:
        return "xccl"


#: /proc/cpuinfo flags of CPUs that multiply bf16 matrices in hardware
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def _cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()
