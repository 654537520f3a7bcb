"""Registers martlet-kernels' kernels (no torch or numba import here)."""

from martlet import hookimpl
from martlet.records import KernelRecord

MARTLET_API = 1


@hookimpl
def martlet_kernels():
    yield KernelRecord(
        name="rms-norm",
        impl="martlet_kernels.impl:RmsNormKernel",
        requires=("torch",),
        replaces="Llama-style RMSNorm",
        summary="Llama-style RMSNorm keeping only its input: compiled (numba) for bfloat16 on "
        "the CPU, PyTorch elsewhere; its output recomputed within an activation budget.",
    )
    yield KernelRecord(
        name="swiglu-mlp",
        impl="martlet_kernels.impl:SwigluKernel",
        requires=("torch",),
        replaces="Llama-style gated MLP (SiLU)",
        summary="Gated MLPs keeping gate and up only (the SiLU recomputed in the backward "
        "pass); the down projection's input recomputed within an activation budget.",
    )
    yield KernelRecord(
        name="liger",
        impl="martlet_kernels.liger:LigerKernel",
        devices=("cuda",),
        requires=("torch", "liger-kernel"),
        replaces="RMSNorm, RoPE, SwiGLU and the fused output layer + cross-entropy",
        aliases=("liger-kernel",),
        summary="Liger-Kernel's Triton kernels for transformers models on CUDA "
        "(pip install liger-kernel).",
    )
