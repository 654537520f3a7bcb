"""The ``martlet sft`` and ``martlet pt`` commands."""

from __future__ import annotations

from martlet.cli import config_command

from martlet_train.job import SftConfig
from martlet_train.job import pt as run_pt
from martlet_train.job import sft as run_sft


@config_command(SftConfig, name="sft")
def sft(config: SftConfig) -> None:
    """Fine-tune a model on chat data (loss on the assistant's tokens).

    Example: martlet sft --model smollm2-135m-instruct --tuner lora --dataset self-cognition
    --model-name Aria --model-author "Acme Labs" --output-dir output/aria
    """
    result = run_sft(config)
    return 130 if result.interrupted else 0


@config_command(SftConfig, name="pt")
def pt(config: SftConfig) -> None:
    """Continue pre-training a model on text (loss on every token)."""
    result = run_pt(config)
    return 130 if result.interrupted else 0
