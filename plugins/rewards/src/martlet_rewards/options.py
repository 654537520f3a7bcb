"""The built-in rewards' own options: what ``--reward-funcs NAME`` accepts with that reward
(imported to build ``--help`` and to check a config: no torch here). ms-swift's spellings where
it has the option (``--soft-max-length``, ``--cosine-max-len``, ``--repetition-n-grams``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from martlet.config import option, require
from martlet.errors import ConfigError

#: ms-swift's ``format`` reward (and TRL's recipes): reasoning in <think>, then the answer in
#: <answer>, and nothing after it
THINK_ANSWER = r"^<think>.*?</think>\s*<answer>.*?</answer>(?![\s\S])"


@dataclass(kw_only=True)
class AccuracyOptions:
    """The accuracy reward: the final answer against the reference."""

    accuracy_column: str | None = option(
        None,
        help="The dataset column holding each reference answer (default: solution, else answer).",
        metavar="COLUMN",
    )
    accuracy_match: Literal["auto", "numeric", "text", "math_verify"] = option(
        "auto",
        help="How answers compare: numeric (as numbers: 1,000 = 1000.0, 3/4 = 0.75), text "
        "(normalised text), math_verify (the math_verify package), or auto: numbers as "
        "numbers, other answers through math_verify where it is installed, else as text.",
    )
    accuracy_tolerance: float = option(
        1e-6, help="Relative tolerance of a numeric comparison.", metavar="TOL"
    )

    def __post_init__(self) -> None:
        require(
            self.accuracy_tolerance >= 0,
            "accuracy-tolerance",
            self.accuracy_tolerance,
            "0 or more",
            "1e-6",
        )
        if self.accuracy_column is not None and not self.accuracy_column.strip():
            raise ConfigError(
                "--accuracy-column is empty",
                fix="name a column, e.g. --accuracy-column answer, or leave it out",
            )


@dataclass(kw_only=True)
class FormatOptions:
    """The format reward: 1 when the completion matches a regular expression."""

    format_pattern: str = option(
        THINK_ANSWER,
        help="The regular expression a completion must match from its start (dot matches "
        "newlines): default <think>...</think> then <answer>...</answer>.",
        metavar="REGEX",
    )

    def __post_init__(self) -> None:
        try:
            re.compile(self.format_pattern)
        except re.error as exc:
            raise ConfigError(
                f"--format-pattern {self.format_pattern!r} is not a regular expression",
                why=str(exc),
                fix=r"e.g. --format-pattern '^<answer>.*?</answer>$'",
            ) from None


@dataclass(kw_only=True)
class SoftOverlongOptions:
    """The soft_overlong reward: DAPO's penalty of completions that near the length limit."""

    soft_max_length: int | None = option(
        None,
        help="L_max: the length (tokens) at which the penalty reaches -1 (default: the run's "
        "--max-completion-length).",
        metavar="TOKENS",
    )
    soft_cache_length: int | None = option(
        None,
        help="L_cache: the penalty grows linearly over the last this many tokens before "
        "L_max (default: a quarter of L_max).",
        metavar="TOKENS",
    )

    def __post_init__(self) -> None:
        require(
            self.soft_max_length is None or self.soft_max_length >= 1,
            "soft-max-length",
            self.soft_max_length,
            "at least 1",
            "512",
        )
        require(
            self.soft_cache_length is None or self.soft_cache_length >= 1,
            "soft-cache-length",
            self.soft_cache_length,
            "at least 1",
            "128",
        )
        if (
            self.soft_max_length is not None
            and self.soft_cache_length is not None
            and self.soft_cache_length >= self.soft_max_length
        ):
            raise ConfigError(
                f"--soft-cache-length ({self.soft_cache_length}) must be less than "
                f"--soft-max-length ({self.soft_max_length})",
                why="completions shorter than L_max - L_cache are not penalised",
                fix="e.g. --soft-max-length 512 --soft-cache-length 128",
            )


@dataclass(kw_only=True)
class CosineOptions:
    """The cosine reward: correctness scaled by length on a cosine schedule."""

    cosine_min_len_value_wrong: float = option(
        -0.5, help="Reward of a wrong answer of length 0.", metavar="R"
    )
    cosine_max_len_value_wrong: float = option(
        0.0, help="Reward of a wrong answer of --cosine-max-len tokens.", metavar="R"
    )
    cosine_min_len_value_correct: float = option(
        1.0, help="Reward of a correct answer of length 0.", metavar="R"
    )
    cosine_max_len_value_correct: float = option(
        0.5, help="Reward of a correct answer of --cosine-max-len tokens.", metavar="R"
    )
    cosine_max_len: int | None = option(
        None,
        help="The length (tokens) the schedule ends at (default: the run's "
        "--max-completion-length).",
        metavar="TOKENS",
    )

    def __post_init__(self) -> None:
        require(
            self.cosine_max_len is None or self.cosine_max_len >= 1,
            "cosine-max-len",
            self.cosine_max_len,
            "at least 1",
            "1000",
        )


@dataclass(kw_only=True)
class RepetitionOptions:
    """The repetition reward: a penalty for repeated word n-grams."""

    repetition_n_grams: int = option(3, help="The n of the word n-grams counted.", metavar="N")
    repetition_max_penalty: float = option(
        -1.0, help="The penalty of a completion that only repeats (0 or less).", metavar="P"
    )

    def __post_init__(self) -> None:
        require(
            self.repetition_n_grams >= 1,
            "repetition-n-grams",
            self.repetition_n_grams,
            "at least 1",
            "3",
        )
        require(
            self.repetition_max_penalty <= 0,
            "repetition-max-penalty",
            self.repetition_max_penalty,
            "0 or less",
            "-1.0",
        )


@dataclass(kw_only=True)
class RewardModelOptions:
    """The reward_model reward: scores from a model trained by `martlet rlhf --method rm`."""

    reward_model: str | None = option(
        None,
        help="The run directory (or a checkpoint in it) of `martlet rlhf --method rm`.",
        metavar="RUN_DIR",
    )
    reward_model_batch_size: int = option(
        8, help="Conversations scored per forward pass.", metavar="N"
    )

    def __post_init__(self) -> None:
        require(
            self.reward_model_batch_size >= 1,
            "reward-model-batch-size",
            self.reward_model_batch_size,
            "at least 1",
            "8",
        )


@dataclass(kw_only=True)
class HttpOptions:
    """The http reward: scores from a server."""

    reward_url: str | None = option(
        None,
        help='The URL completions are POSTed to as JSON {"prompts", "completions", "columns"}; '
        'it answers {"rewards": [one number or null per completion]}.',
        metavar="URL",
    )
    reward_timeout: float = option(
        60.0, help="Seconds to wait for the server's answer.", metavar="SECONDS"
    )
    reward_retries: int = option(
        3,
        help="How many times to try again when the server is busy (429, 503) or cannot be reached.",
        metavar="N",
    )
    reward_api_key: str | None = option(
        None,
        help="Bearer key sent with each request (default: $MARTLET_REWARD_API_KEY).",
        metavar="KEY",
    )

    def __post_init__(self) -> None:
        require(self.reward_timeout > 0, "reward-timeout", self.reward_timeout, "above 0", "60")
        require(self.reward_retries >= 0, "reward-retries", self.reward_retries, "0 or more", "3")
        if self.reward_url is not None and not re.match(r"^https?://\S+$", self.reward_url):
            raise ConfigError(
                f"--reward-url {self.reward_url!r} is not an http(s) URL",
                fix="e.g. --reward-url http://127.0.0.1:8000/reward",
            )
