"""The sglang backend's own options (``--infer-backend sglang --mem-fraction-static 0.8``); no
SGLang import here."""

from __future__ import annotations

from dataclasses import dataclass

from martlet.config import option, require


@dataclass(kw_only=True)
class SglangOptions:
    """SGLang: the engine's memory and parallelism"""

    mem_fraction_static: float | None = option(
        None,
        help="The share of GPU memory for weights and KV cache (default: SGLang's choice).",
        metavar="FRACTION",
    )
    tensor_parallel_size: int = option(1, help="GPUs each model is sharded over.", metavar="N")
    max_lora_rank: int | None = option(
        None, help="The largest LoRA rank served (default: SGLang's, from --adapters).", metavar="R"
    )

    def __post_init__(self) -> None:
        fraction = self.mem_fraction_static
        require(fraction is None or 0 < fraction < 1, "mem-fraction-static", fraction,
                "in (0, 1)", "0.8")  # fmt: skip
        require(self.tensor_parallel_size >= 1, "tensor-parallel-size",
                self.tensor_parallel_size, "at least 1", "2")  # fmt: skip
        require(self.max_lora_rank is None or self.max_lora_rank >= 1, "max-lora-rank",
                self.max_lora_rank, "at least 1", "16")  # fmt: skip
