"""The reward functions of online RL: chosen by name, built with their options, combined.

A command that trains on generated completions (``martlet rlhf --method grpo``) inherits
:class:`RewardOptions`: ``--reward-funcs accuracy format`` names reward records
(:class:`~martlet.records.RewardRecord`, a list selector: each named record's own options
join the command's, ``--format-pattern REGEX``) and ``--reward-weights 1 0.5`` weighs them
(default: 1 each). :func:`check` refuses, before anything loads, an empty list, unknown names
(the installed ones listed, or the package that provides a name), a record whose packages are
missing and a weight count that does not match; :func:`build` then builds each one
(:class:`martlet.interfaces.Reward`) into a :class:`Rewards`, which checks the dataset's
columns before training (:meth:`Rewards.check_columns`) and scores each batch of completions:
every function's scores (for its own metrics) and their weighted sum, a None ("does not
apply") left out of the sum as TRL's ``nansum`` leaves NaN out, and a completion no function
applies to left without a reward. A function that raises, or returns a NaN, an infinity, a
non-number or the wrong number of scores, is a :class:`~martlet.errors.MartletError` naming it.

Nothing here imports a reward's implementation until :func:`build`, nor any heavy library.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from martlet.config import option
from martlet.errors import ConfigError, MartletError, brief
from martlet.records import RewardRecord

#: keywords a trainer passes a reward that are not dataset columns
NOT_COLUMNS = frozenset(
    {"prompts", "completions", "completion_ids", "trainer_state", "log_extra", "log_metric"}
)


@dataclasses.dataclass(kw_only=True)
class RewardOptions:
    """Reward functions: what scores each generated completion."""

    reward_funcs: list[str] = option(
        default_factory=list,
        help="The reward functions that score each completion, e.g. accuracy format "
        "(space- or comma-separated); each one's own options are accepted with it.",
        aliases=("reward_func",),
        names_of="rewards",
        metavar="NAME",
    )
    reward_weights: list[float] | None = option(
        None,
        help="One weight per reward function, in the order of --reward-funcs "
        "(default: 1 each); a completion's reward is the weighted sum.",
        metavar="W",
    )

    def __post_init__(self) -> None:
        self.reward_funcs = names_in(self.reward_funcs)
        parent = getattr(super(), "__post_init__", None)
        if parent is not None:
            parent()


def names_in(value: Any) -> list[str]:
    """The names a ``--reward-funcs`` value holds: a list, or names joined by commas."""
    items = [value] if isinstance(value, str) else list(value or [])
    return [n.strip() for item in items for n in str(item).split(",") if n.strip()]


# ---------------------------------------------------------------------------- reading inputs


def text_of(completion: Any) -> str:
    """A completion's text, whether given as text (Martlet, TRL's plain-text data) or as
    messages (TRL's chat data: ``[{"role": "assistant", "content": "..."}]``; the contents
    joined; a content given as parts, ``[{"type": "text", "text": "..."}]``, read too)."""
    if completion is None:
        return ""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Mapping):
        return _content_text(completion.get("content"))
    return "".join(text_of(message) for message in completion)


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        return "".join(
            str(part.get("text") or "") if isinstance(part, Mapping) else str(part)
            for part in content
        )
    return str(content)


def conversation_of(prompt: Any) -> list[dict[str, Any]]:
    """A prompt as a conversation: messages as they are, a text as one user message."""
    if prompt is None:
        return []
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    if isinstance(prompt, Mapping):
        return [dict(prompt)]
    return [dict(message) for message in prompt]


# ---------------------------------------------------------------------------- choosing


def _names_and_weights(config: Any) -> tuple[list[str], list[float]]:
    names = names_in(getattr(config, "reward_funcs", None))
    if not names:
        from martlet import registry

        installed = registry.names("rewards")
        raise ConfigError(
            "no reward function",
            why="online RL scores each generated completion with the functions --reward-funcs "
            "names",
            fix=f"pass --reward-funcs NAME [NAME ...] (installed: {', '.join(installed)})"
            if installed
            else "install reward functions (pip install martlet-rewards) and pass "
            "--reward-funcs NAME",
        )
    weights = getattr(config, "reward_weights", None)
    if weights is None or len(weights) == 0:
        return names, [1.0] * len(names)
    weights = [float(w) for w in weights]
    if len(weights) != len(names):
        raise ConfigError(
            f"--reward-weights has {len(weights)} weight{'s' * (len(weights) != 1)} for "
            f"{len(names)} reward function{'s' * (len(names) != 1)} ({' '.join(names)})",
            why="each reward function takes the weight in its place",
            fix=f"give {len(names)} weights, e.g. --reward-weights {' '.join(['1'] * len(names))}"
            ", or leave --reward-weights out (1 each)",
        )
    bad = [w for w in weights if not math.isfinite(w)]
    if bad:
        raise ConfigError(
            f"--reward-weights must be finite numbers, not {bad[0]!r}",
            fix="e.g. --reward-weights 1 0.5",
        )
    return names, weights


def check(config: Any) -> list[RewardRecord]:
    """The reward records ``config`` names (``reward_funcs``), checked before anything loads.

    Raises:
        ConfigError: no name, a name given twice, or a weight count that does not match.
        UnknownNameError: a name no installed record has (close names and the installed ones,
            or the package that provides it).
        PluginError: the plugin providing it is installed but failed or is disabled.
        MissingDependencyError: a package the record ``requires`` is not installed.
    """
    from martlet import registry
    from martlet.errors import MissingDependencyError

    names, _ = _names_and_weights(config)
    records: list[RewardRecord] = []
    for name in names:
        record = registry.get("rewards", name)
        if record in records:
            raise ConfigError(
                f"--reward-funcs names the reward {record.name!r} twice",
                why="a reward function is built once, with one set of options",
                fix="name it once and give it a larger weight (--reward-weights)",
            )
        missing = record.missing_requirements()
        if missing:
            raise MissingDependencyError(
                f"reward {record.name!r} needs {', '.join(missing)}, which is not installed",
                why=f"the plugin {record.origin or '?'} declares it in the record's `requires`",
                fix="pip install " + " ".join(f"'{req}'" for req in missing),
            )
        records.append(record)
    return records


@dataclasses.dataclass(frozen=True)
class RewardFunc:
    """One built reward function: its record, weight and implementation (a
    :class:`~martlet.interfaces.Reward`)."""

    record: RewardRecord
    weight: float
    fn: Any

    @property
    def name(self) -> str:
        """The record's name: what the function's metrics are logged under."""
        return self.record.name

    @property
    def columns(self) -> tuple[str, ...]:
        """The dataset columns it reads: the instance's ``columns`` where it has them, else
        the record's (a name, or names joined by ``|``)."""
        own = getattr(self.fn, "columns", None)
        if own is None:
            return self.record.columns
        return (own,) if isinstance(own, str) else tuple(own)


def build(
    config: Any, *, device: str | None = None, max_completion_length: int | None = None
) -> Rewards:
    """The reward functions ``config`` names, built with their options and weighted.

    ``config`` has ``reward_funcs`` and ``reward_weights`` (:class:`RewardOptions`) and the
    options of the records named (composed into it when it was built). Each record's
    implementation is built as ``impl(max_completion_length=..., device=..., **options)``;
    ``max_completion_length`` defaults to the config's own.

    Raises:
        MartletError: what :func:`check` raises, or a reward that cannot be built (its own
            error, or a ConfigError naming it).
    """
    from martlet.compose import option_values

    records = check(config)
    _, weights = _names_and_weights(config)
    if max_completion_length is None:
        max_completion_length = getattr(config, "max_completion_length", None)
    funcs = []
    for record, weight in zip(records, weights, strict=True):
        options = option_values(config, record)
        cls = record.load()
        try:
            fn = cls(max_completion_length=max_completion_length, device=device, **options)
        except MartletError as exc:
            named = _naming(record.name, exc)
            if named is exc:
                raise
            raise named from exc
        except TypeError as exc:
            raise ConfigError(
                f"cannot build the reward {record.name!r} with its options",
                why=str(exc),
                fix=f"check the options of {record.name!r} (--reward-funcs {record.name} --help)",
                cause=exc,
            ) from exc
        except Exception as exc:
            raise MartletError(
                f"cannot build the reward {record.name!r}",
                why=brief(exc),
                fix=f"check the options of {record.name!r}, or report it to the plugin "
                f"{record.origin or '?'} (--debug shows the traceback)",
                cause=exc,
            ) from exc
        funcs.append(RewardFunc(record, weight, fn))
    return Rewards(funcs)


# ---------------------------------------------------------------------------- scoring


@dataclasses.dataclass(frozen=True)
class Scores:
    """What :class:`Rewards` gives for one batch.

    Attributes:
        per_func: reward name -> its score of each completion (None: it does not apply).
        total: each completion's reward: the weighted sum of the scores that apply, None
            where none does.
    """

    per_func: dict[str, list[float | None]]
    total: list[float | None]

    def metrics(self, prefix: str = "rewards/") -> dict[str, float]:
        """``rewards/NAME/mean`` and ``rewards/NAME/std`` per function, ``reward`` and
        ``reward_std`` of the totals (TRL's names): means and sample standard deviations of
        the scores that apply (a standard deviation of one score is 0); a function that
        applied to no completion has no entries."""
        out: dict[str, float] = {}
        for name, scores in self.per_func.items():
            stats = _stats(scores)
            if stats is not None:
                out[f"{prefix}{name}/mean"], out[f"{prefix}{name}/std"] = stats
        stats = _stats(self.total)
        if stats is not None:
            out["reward"], out["reward_std"] = stats
        return out


def _stats(values: Sequence[float | None]) -> tuple[float, float] | None:
    present = [v for v in values if v is not None]
    if not present:
        return None
    mean = sum(present) / len(present)
    if len(present) < 2:
        return mean, 0.0
    var = sum((v - mean) ** 2 for v in present) / (len(present) - 1)
    return mean, math.sqrt(var)


class Rewards:
    """The reward functions of a run, weighted: call it on a batch of completions."""

    def __init__(self, funcs: Sequence[RewardFunc]) -> None:
        self.funcs = list(funcs)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.funcs]

    @property
    def weights(self) -> list[float]:
        return [f.weight for f in self.funcs]

    def columns(self) -> dict[str, tuple[str, ...]]:
        """Reward name -> the dataset columns it reads (a name, or names joined by ``|``)."""
        return {f.name: f.columns for f in self.funcs}

    def check_columns(self, columns: Iterable[str], *, dataset: str = "the dataset") -> None:
        """Refuse, before training, a dataset without a column a reward reads.

        Raises:
            ConfigError: names the reward, the column and the columns ``dataset`` has.
        """
        have = set(columns)
        for func in self.funcs:
            for item in func.columns:
                choices = item.split("|")
                if any(c in have for c in choices):
                    continue
                wanted = " or ".join(f"'{c}'" for c in choices)
                flags = _column_flags(func.record)
                raise ConfigError(
                    f"the reward {func.name!r} reads the column {wanted}, which {dataset} "
                    "does not have",
                    why=f"its rows have {', '.join(sorted(have)) or 'no columns'}",
                    fix=(f"name the column with {' or '.join(flags)}, " if flags else "")
                    + f"use rows with a {choices[0]!r} column, or drop {func.name!r} from "
                    "--reward-funcs",
                )

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> Scores:
        """Score a batch: every function called with ``prompts=``, ``completions=`` and
        ``kwargs`` (``completion_ids`` and the dataset's columns, a list each), its scores
        checked (one per completion, each a finite number or None), then weighted and summed.

        Raises:
            MartletError: naming the function: it raised, or returned the wrong number of
                scores, or something that is not a finite number or None (NaN included:
                None, not NaN, says "does not apply"), or a column it reads is missing.
        """
        n = len(completions)
        per_func: dict[str, list[float | None]] = {}
        for func in self.funcs:
            for item in func.columns:
                if not any(c in kwargs for c in item.split("|")):
                    raise MartletError(
                        f"the reward {func.name!r} got no column {item.replace('|', ' or ')!r}",
                        why="the trainer passes every dataset column by name",
                        fix="check the dataset before training (Rewards.check_columns)",
                    )
            try:
                got = func.fn(prompts=prompts, completions=completions, **kwargs)
            except MartletError as exc:
                named = _naming(func.name, exc)
                if named is exc:
                    raise
                raise named from exc
            except Exception as exc:
                raise MartletError(
                    f"the reward {func.name!r} failed on a batch of {n} completions",
                    why=brief(exc),
                    fix=f"fix the reward, or report it to the plugin {func.record.origin or '?'}"
                    " (--debug shows the traceback); drop it from --reward-funcs to train "
                    "without it",
                    cause=exc,
                ) from exc
            per_func[func.name] = _checked(func.name, got, n)
        total: list[float | None] = []
        for i in range(n):
            parts = [f.weight * s for f in self.funcs if (s := per_func[f.name][i]) is not None]
            total.append(sum(parts) if parts else None)
        return Scores(per_func, total)


def _checked(name: str, got: Any, n: int) -> list[float | None]:
    try:
        scores = list(got)
    except TypeError:
        raise MartletError(
            f"the reward {name!r} returned {type(got).__name__}, not a list of scores",
            fix="return one float (or None) per completion",
        ) from None
    if len(scores) != n:
        raise MartletError(
            f"the reward {name!r} returned {len(scores)} scores for {n} completions",
            fix="return one float (or None) per completion, in order",
        )
    out: list[float | None] = []
    for i, value in enumerate(scores):
        if value is None:
            out.append(None)
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise MartletError(
                f"the reward {name!r} returned {value!r} for completion {i}, not a number",
                fix="return one float (or None where it does not apply) per completion",
            ) from None
        if math.isnan(number):
            raise MartletError(
                f"the reward {name!r} returned NaN for completion {i}",
                why="a NaN reward is no score; left in, it makes its group's advantages NaN",
                fix="return None where the reward does not apply (left out of the weighted "
                "sum), else a finite float",
            )
        if math.isinf(number):
            raise MartletError(
                f"the reward {name!r} returned {value!r} for completion {i}",
                why="an infinite reward makes every advantage of its group meaningless",
                fix="return a finite float (or None where it does not apply)",
            )
        out.append(number)
    return out


def _naming(name: str, exc: MartletError) -> MartletError:
    """``exc`` saying which reward it comes from, where it does not already."""
    if repr(name) in exc.what or name in exc.what.split():
        return exc
    try:
        return type(exc)(
            f"the reward {name!r}: {exc.what}", why=exc.why, fix=exc.fix, cause=exc.cause or exc
        )
    except TypeError:  # a subclass built otherwise: keep it as it is
        return exc


def _column_flags(record: RewardRecord) -> list[str]:
    """The flags of the record's options that name a column (fields ending in ``_column``)."""
    try:
        options = record.options_class()
    except MartletError:
        return []
    if options is None:
        return []
    return [
        "--" + f.name.replace("_", "-")
        for f in dataclasses.fields(options)
        if f.name.endswith("_column")
    ]
