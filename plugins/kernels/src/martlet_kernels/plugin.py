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
        name="linear-cross-entropy",
        impl="martlet_kernels.impl:LinearCrossEntropyKernel",
        requires=("torch",),
        replaces="the output layer + cross-entropy of the sft/pt loss",
        provides=("output_cross_entropy",),
        aliases=("linear-ce", "fused-linear-cross-entropy"),
        summary="The output layer and the cross-entropy a chunk of rows at a time, gradients "
        "computed in the forward pass: no vocabulary-wide logits (Llama, Mistral, Qwen2/3, "
        "Phi-3, SmolLM3).",
    )
    yield KernelRecord(
        name="packed-attention",
        impl="martlet_kernels.impl:PackedAttentionKernel",
        requires=("torch", "transformers"),
        replaces="attention over packed rows (--packing, --padding-free)",
        provides=("segment_attention",),
        summary="Attention segment by segment inside packed rows, segments bucketed by "
        "length, instead of the whole row under a block-diagonal mask.",
    )
    yield KernelRecord(
        name="lora-dropout",
        impl="martlet_kernels.impl:LoraDropoutKernel",
        devices=("cpu",),
        requires=("torch", "numpy"),
        replaces="LoRA adapters' dropout",
        summary="LoRA dropout masks from a compiled counter-based generator (numba), ~30x "
        "faster than torch's CPU bernoulli; the same distribution.",
    )
    yield KernelRecord(
        name="fused-lora",
        impl="martlet_kernels.impl:FusedLoraKernel",
        requires=("torch", "peft"),
        replaces="plain PEFT LoRA layers over nn.Linear",
        summary="Each plain LoRA layer as one autograd function: the base product and the "
        "adapter's added with addmm, dropout masks kept as seeds, less kept for backward.",
    )
    yield KernelRecord(
        name="packed-linear",
        impl="martlet_kernels.impl:PackedLinearKernel",
        devices=("cpu",),
        dtypes=("bfloat16",),
        uses=("infer",),
        requires=("torch",),
        replaces="bfloat16 nn.Linear layers (inference)",
        summary="Linear weights packed once into oneDNN's layout for decoding on the CPU "
        "(a second copy of the weights in memory).",
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
