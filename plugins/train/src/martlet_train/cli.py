"""The ``martlet sft`` and ``martlet pt`` commands."""

from __future__ import annotations

from martlet.cli import config_command

from martlet_train.job import SftConfig
from martlet_train.job import check as check_sft
from martlet_train.job import pt as run_pt
from martlet_train.job import sft as run_sft
from martlet_train.launch import rank_errors
from martlet_train.rlhf import RlhfConfig
from martlet_train.rlhf import check as check_rlhf
from martlet_train.rlhf import rlhf as run_rlhf


@config_command(SftConfig, name="sft", check=check_sft)
def sft(config: SftConfig) -> None:
    """Fine-tune a model on chat data (loss on the assistant's tokens).

    Example: martlet sft --model smollm2-135m-instruct --tuner lora --dataset self-cognition
    --model-name Aria --model-author "Acme Labs" --output-dir output/aria
    """
    with rank_errors():
        result = run_sft(config)
    return result.exit_code


@config_command(SftConfig, name="pt", check=check_sft)
def pt(config: SftConfig) -> None:
    """Continue pre-training a model on text (loss on every token)."""
    with rank_errors():
        result = run_pt(config)
    return result.exit_code


@config_command(RlhfConfig, name="rlhf", check=check_rlhf)
def rlhf(config: RlhfConfig) -> None:
    """Align a model with preferences (dpo, kto, simpo, cpo, orpo), train a reward model (rm)
    or distil a teacher (gkd).

    Example: martlet rlhf --method dpo --model smollm2-135m-instruct --tuner lora
    --dataset sample-dpo --beta 0.1 --output-dir output/dpo
    """
    with rank_errors():
        result = run_rlhf(config)
    return result.exit_code
