"""The contract of ``accelerators`` records: detection, devices, dtypes, memory, seeding."""

from __future__ import annotations

from typing import Any

import pytest
from martlet.interfaces import Accelerator
from martlet.records import Record

from martlet_sdk.contracts.base import RecordContract


class AcceleratorContract(RecordContract):
    """Behavioural checks for a device kind; device checks skip where no device is present."""

    kind = "accelerators"
    interface = {
        "is_available": None,
        "device_count": None,
        "device": None,
        "supported_dtypes": None,
        "preferred_dtype": None,
        "memory_stats": None,
        "distributed_backend": None,
        "manual_seed": None,
        "synchronize": None,
    }

    @pytest.fixture
    def accelerator(self, impl: Any) -> Accelerator:
        return impl()

    @pytest.fixture
    def available(self, accelerator: Accelerator, record: Record) -> Accelerator:
        if not accelerator.is_available():
            pytest.skip(f"no {record.name} device on this machine")
        return accelerator

    def test_satisfies_the_protocol(self, accelerator: Any) -> None:
        assert isinstance(accelerator, Accelerator)

    def test_device_type_matches_record(self, accelerator: Any, record: Record) -> None:
        assert accelerator.device_type == record.device_type

    def test_detection_answers_without_error(self, accelerator: Any) -> None:
        available = accelerator.is_available()
        assert isinstance(available, bool)
        count = accelerator.device_count()
        assert isinstance(count, int) and count >= 0
        assert (count > 0) == available

    def test_backend_is_a_torch_distributed_backend(self, accelerator: Any) -> None:
        backend = accelerator.distributed_backend()
        assert backend in {"gloo", "nccl", "mpi", "ucc", "xccl", "hccl", "cncl", "ccl"}

    def test_device_holds_tensors(self, available: Any, record: Record) -> None:
        import torch

        device = available.device(0)
        assert isinstance(device, torch.device) and device.type == record.device_type
        x = torch.ones(4, 4, device=device)
        assert float((x @ x).sum().cpu()) == 64.0
        available.synchronize()

    def test_every_supported_dtype_computes(self, available: Any) -> None:
        import torch

        dtypes = available.supported_dtypes()
        assert "float32" in dtypes
        assert available.preferred_dtype() in dtypes
        for name in dtypes:
            dtype = getattr(torch, name)
            x = torch.full((8, 8), 0.5, dtype=dtype, device=available.device(0))
            assert torch.isfinite((x @ x).float()).all(), name

    def test_memory_stats(self, available: Any) -> None:
        stats = available.memory_stats(0)
        assert isinstance(stats["total"], int) and stats["total"] > 0
        assert isinstance(stats["free"], int) and 0 <= stats["free"] <= stats["total"]

    def test_manual_seed_makes_sampling_repeatable(self, available: Any) -> None:
        import torch

        device = available.device(0)
        available.manual_seed(1234)
        a = torch.randn(16, device=device)
        available.manual_seed(1234)
        b = torch.randn(16, device=device)
        assert torch.equal(a, b)
