"""Registers the megatron parallel strategy and `martlet megatron` (no torch import here)."""

from martlet import hookimpl
from martlet.records import CommandRecord, ParallelRecord

MARTLET_API = 1


@hookimpl
def martlet_parallel_strategies():
    yield ParallelRecord(
        name="megatron",
        impl="martlet_megatron.strategy:Megatron",
        options="martlet_megatron.options:MegatronOptions",
        aliases=("megatron-core", "mcore"),
        multi_process=True,
        capabilities=(
            "cuda",
            "nccl",
            "tensor-parallel",
            "sequence-parallel",
            "full",
            "resume-any-world-size",
        ),
        summary="Megatron-Core tensor parallelism (CUDA GPUs, NCCL): the Hugging Face model "
        "rebuilt as Megatron-Core's GPTModel with its layers split over "
        "--tensor-model-parallel-size GPUs (Llama, Qwen2, Mistral); saves Hugging Face files",
    )


@hookimpl
def martlet_commands():
    yield CommandRecord(
        name="megatron",
        impl="martlet_megatron.cli:megatron",
        aliases=("mcore",),
        summary="Convert Llama-family weights between Hugging Face and Megatron-Core "
        "checkpoints (split for tensor and pipeline parallel ranks).",
    )
