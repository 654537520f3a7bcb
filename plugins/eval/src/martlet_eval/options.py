"""The eval tasks' own options: what ``martlet eval --tasks NAME`` accepts for that task
(imported to build ``--help``: no torch here)."""

from __future__ import annotations

from dataclasses import dataclass

from martlet.config import option, require


@dataclass(kw_only=True)
class ChoiceOptions:
    """Multiple-choice tasks."""

    subjects: list[str] = option(
        default_factory=list,
        help="Score only these subjects (comma-separated, e.g. anatomy,astronomy); default: all.",
        metavar="NAME",
    )

    def __post_init__(self) -> None:
        self.subjects = [s.strip() for item in self.subjects for s in item.split(",") if s.strip()]


@dataclass(kw_only=True)
class GenerateOptions:
    """Tasks scored on a generated answer."""

    max_gen_tokens: int = option(
        256, help="Most tokens generated per answer (greedy).", aliases=("max_gen_toks",)
    )
    answer_pattern: str | None = option(
        None,
        help="A regular expression whose first group is the answer in a generation "
        "(default: 'The answer is N', '#### N' or \\boxed{N}, else the last number).",
        metavar="REGEX",
    )

    def __post_init__(self) -> None:
        require(
            self.max_gen_tokens >= 1, "max-gen-tokens", self.max_gen_tokens, "at least 1", "256"
        )
        if self.answer_pattern is not None:
            import re

            from martlet.errors import ConfigError

            try:
                compiled = re.compile(self.answer_pattern)
            except re.error as exc:
                raise ConfigError(
                    f"--answer-pattern {self.answer_pattern!r} is not a regular expression",
                    why=str(exc),
                    fix=r"e.g. --answer-pattern 'answer: (-?\d+)'",
                ) from None
            if compiled.groups < 1:
                raise ConfigError(
                    f"--answer-pattern {self.answer_pattern!r} has no group",
                    why="the first parenthesised group is taken as the answer",
                    fix=r"e.g. --answer-pattern 'answer: (-?\d+)'",
                )
