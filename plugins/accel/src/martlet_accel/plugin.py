"""Registers the cpu, cuda, mps and xpu accelerators (no torch import here)."""

from martlet import hookimpl
from martlet.records import AcceleratorRecord

MARTLET_API = 1


@hookimpl
def martlet_accelerators():
    yield AcceleratorRecord(
        name="cpu",
        impl="martlet_accel.devices:CpuAccelerator",
        requires=("torch",),
        summary="The host CPU; bf16 is fast where the CPU has AVX512-BF16 or AMX.",
    )
    yield AcceleratorRecord(
        name="cuda",
        impl="martlet_accel.devices:CudaAccelerator",
        aliases=("gpu",),
        requires=("torch",),
        summary="NVIDIA GPUs (and AMD GPUs through ROCm builds of torch).",
    )
    yield AcceleratorRecord(
        name="mps",
        impl="martlet_accel.devices:MpsAccelerator",
        requires=("torch",),
        summary="Apple-silicon GPUs through Metal Performance Shaders.",
    )
    yield AcceleratorRecord(
        name="xpu",
        impl="martlet_accel.devices:XpuAccelerator",
        requires=("torch",),
        summary="Intel GPUs through torch.xpu.",
    )
