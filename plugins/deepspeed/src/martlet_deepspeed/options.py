"""The options of the deepspeed strategy (imported to build ``--help``: no torch here)."""

from __future__ import annotations

from dataclasses import dataclass

from martlet.config import option
from martlet.errors import ConfigError

from martlet_deepspeed.config import PRESETS


@dataclass(kw_only=True)
class DeepSpeedOptions:
    """DeepSpeed"""

    deepspeed: str = option(
        "zero2",
        help="The DeepSpeed config: a preset (zero1, zero2, zero3, zero2_offload: the optimizer "
        "state in the CPU's memory, zero3_offload: the optimizer state and the parameters "
        'there) or a DeepSpeed JSON file ("auto" values are filled from the run\'s options). '
        "Given alone, it selects --parallel deepspeed.",
        aliases=("deepspeed_config",),
        metavar="PRESET|PATH.json",
    )
    # Read, not added: every training command declares these; the strategy fills DeepSpeed's
    # "auto" batch sizes and clipping from them (as a model loader reads --torch-dtype).
    per_device_train_batch_size: int = option(1, help="Rows per micro-batch on each device.")
    gradient_accumulation_steps: int = option(1, help="Micro-batches per optimizer step.")
    max_grad_norm: float = option(1.0, help="Clip the gradient norm to this (0: no clipping).")

    def __post_init__(self) -> None:
        value = str(self.deepspeed or "").strip()
        if not value:
            raise ConfigError(
                "--deepspeed is empty",
                fix=f"pass one of {', '.join(PRESETS)}, or the path of a DeepSpeed JSON config",
            )
        if value.lower() in PRESETS:
            self.deepspeed = value.lower()
