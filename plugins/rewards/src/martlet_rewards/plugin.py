"""Registers the built-in reward functions (no torch import here): ms-swift's ORM names."""

from martlet import hookimpl
from martlet.records import RewardRecord

MARTLET_API = 1

OPTIONS = "martlet_rewards.options:"
R = "martlet_rewards.rules:"


@hookimpl
def martlet_rewards():
    yield RewardRecord(
        name="accuracy",
        impl=R + "Accuracy",
        options=OPTIONS + "AccuracyOptions",
        columns=("solution|answer",),
        summary="1 when the final answer (<answer>, \\boxed{} or the last number) is the "
        "reference, else 0",
    )
    yield RewardRecord(
        name="format",
        impl=R + "Format",
        options=OPTIONS + "FormatOptions",
        summary="1 when the completion matches a regular expression "
        "(default <think>...</think><answer>...</answer>), else 0",
    )
    yield RewardRecord(
        name="soft_overlong",
        impl=R + "SoftOverlong",
        options=OPTIONS + "SoftOverlongOptions",
        summary="DAPO's length penalty: 0, then down to -1 over the last tokens before the limit",
    )
    yield RewardRecord(
        name="cosine",
        impl=R + "Cosine",
        options=OPTIONS + "CosineOptions",
        columns=("solution|answer",),
        summary="accuracy scaled by length on a cosine schedule (short right answers best)",
    )
    yield RewardRecord(
        name="repetition",
        impl=R + "Repetition",
        options=OPTIONS + "RepetitionOptions",
        summary="a penalty for repeated word n-grams",
    )
    yield RewardRecord(
        name="reward_model",
        impl="martlet_rewards.model:RewardModel",
        options=OPTIONS + "RewardModelOptions",
        aliases=("rm",),
        requires=("torch", "transformers"),
        summary="the score of a reward model trained by `martlet rlhf --method rm`",
    )
    yield RewardRecord(
        name="http",
        impl="martlet_rewards.remote:HttpReward",
        options=OPTIONS + "HttpOptions",
        aliases=("remote",),
        summary="scores from a server: POST {prompts, completions, columns} -> {rewards}",
    )
