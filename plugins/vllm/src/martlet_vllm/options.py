"""The vllm backend's own options (``--infer-backend vllm --gpu-memory-utilization 0.8``); no
vLLM import here."""

from __future__ import annotations

from dataclasses import dataclass

from martlet.config import option, require

#: the LoRA ranks vLLM allocates for (its ``max_lora_rank`` choices)
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


@dataclass(kw_only=True)
class VllmOptions:
    """vLLM: the engine's memory, parallelism and compilation"""

    gpu_memory_utilization: float | None = option(
        None,
        help="The share of the GPU's memory vLLM may take for weights and KV cache (default "
        "0.9; on the CPU a share of RAM, default 0.2).",
        metavar="FRACTION",
    )
    kv_cache_space: int | None = option(
        None,
        help="CPU only: GiB of RAM for the KV cache (sets VLLM_CPU_KVCACHE_SPACE; default: "
        "that variable, else vLLM's own choice).",
        metavar="GIB",
    )
    tensor_parallel_size: int = option(1, help="GPUs each model is sharded over.", metavar="N")
    enforce_eager: bool = option(
        False, help="Run eagerly: no CUDA graphs or compilation (starts faster, decodes slower)."
    )
    max_lora_rank: int | None = option(
        None,
        help="The largest LoRA rank served (default: the largest of --adapters, rounded up to "
        "one of " + ", ".join(map(str, LORA_RANKS)) + ").",
        metavar="R",
    )
    max_logprobs: int = option(
        20, help="The most top_logprobs/prompt_logprobs a request may ask for.", metavar="K"
    )

    def __post_init__(self) -> None:
        fraction = self.gpu_memory_utilization
        require(
            fraction is None or 0 < fraction <= 1,
            "gpu-memory-utilization",
            fraction,
            "in (0, 1]",
            "0.8",
        )
        require(
            self.kv_cache_space is None or self.kv_cache_space >= 1,
            "kv-cache-space",
            self.kv_cache_space,
            "a whole number of GiB, at least 1",
            "4",
        )
        require(self.tensor_parallel_size >= 1, "tensor-parallel-size",
                self.tensor_parallel_size, "at least 1", "2")  # fmt: skip
        require(
            self.max_lora_rank is None or self.max_lora_rank in LORA_RANKS,
            "max-lora-rank",
            self.max_lora_rank,
            "one of " + ", ".join(map(str, LORA_RANKS)),
            "16",
        )
        require(self.max_logprobs >= 0, "max-logprobs", self.max_logprobs, "0 or more", "20")
