"""The contract of a reward record: built with its default options, it scores a batch of
completions — one finite float or None each, the same scores again for the same batch, empty
completions included, completions given as texts or as TRL's messages alike."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest

from martlet_sdk.contracts.base import RecordContract

#: the batch every reward is called with: two prompts, three completions each
PROMPTS = [
    [{"role": "user", "content": "What is 6 times 7? Put the answer in \\boxed{}."}],
    [
        {"role": "system", "content": "Think, then answer."},
        {"role": "user", "content": "Name the capital of France."},
    ],
]
COMPLETIONS = [
    "<think>6 times 7 is 42.</think>\n<answer>\\boxed{42}</answer>",
    "It is 41, I think.",
    "",
    "<think>France's capital.</think><answer>Paris</answer>",
    "paris paris paris paris paris paris",
    "",
]
#: values of a column a reward reads (one per completion, a prompt's value repeated)
VALUES = ["42", "42", "42", "Paris", "Paris", "Paris"]


def sample_batch(record: Any) -> dict[str, Any]:
    """The keywords a trainer calls a reward with for :data:`COMPLETIONS`: prompts (repeated
    for each completion), ``completion_ids`` (one id per character, ids 1-200) and each column
    the record reads (the first of alternatives ``a|b``), plus one it does not."""
    prompts = [PROMPTS[i // 3] for i in range(len(COMPLETIONS))]
    ids = [[1 + ord(ch) % 200 for ch in text] for text in COMPLETIONS]
    columns = {item.split("|")[0]: list(VALUES) for item in record.columns}
    columns.setdefault("source", ["contract"] * len(COMPLETIONS))
    return {"prompts": prompts, "completions": list(COMPLETIONS), "completion_ids": ids, **columns}


class RewardContract(RecordContract):
    """A reward: registration checks, the Reward shape, and its behaviour on a small batch
    (:func:`sample_batch`): built as the trainer builds it — ``impl(max_completion_length=64,
    device="cpu", **options)``, ``options`` the defaults of the record's options class updated
    with the ``reward_options`` fixture (override it for an option the user must give: a run
    directory, a URL), in a manager holding the plugin and those the ``reward_plugins``
    fixture names (the model loaders and tuners a reward model needs) — it returns one float
    (finite: not NaN, which says nothing; None says "does not apply") or None per completion,
    for empty completions too, the same scores for the same batch, and the same scores when
    the completions come as TRL's lists of one assistant message; the core's
    :class:`martlet.rewards.Rewards` accepts them; ``columns`` names only columns (``a|b`` for
    alternatives). Each failure says what the reward returned and what to return instead."""

    kind = "rewards"
    interface = {"__call__": None}

    @pytest.fixture
    def reward_options(self) -> dict[str, Any]:
        return {}

    @pytest.fixture
    def reward_plugins(self) -> tuple[str, ...]:
        return ()

    @pytest.fixture
    def reward(
        self,
        record: Any,
        impl: Any,
        plugin: Any,
        reward_options: dict[str, Any],
        reward_plugins: tuple[str, ...],
    ) -> Any:
        options: dict[str, Any] = {}
        declared = record.options_class()
        if declared is not None:
            given = {k: v for k, v in reward_options.items() if k in _field_names(declared)}
            made = declared(**given)
            options = {f.name: getattr(made, f.name) for f in dataclasses.fields(made) if f.init}
        options.update(reward_options)
        if not reward_plugins:
            return impl(max_completion_length=64, device="cpu", **options)
        from martlet_sdk.isolation import activated, isolated_manager

        with activated(isolated_manager(plugin, *reward_plugins)):
            return impl(max_completion_length=64, device="cpu", **options)

    def test_it_is_a_reward(self, reward: Any) -> None:
        from martlet.interfaces import Reward

        assert isinstance(reward, Reward), "a reward is callable: reward(prompts=, completions=)"
        columns = getattr(reward, "columns", None)
        if columns is not None:
            assert not isinstance(columns, str) or columns.strip(), "columns names a column"
            listed = (columns,) if isinstance(columns, str) else tuple(columns)
            assert all(isinstance(c, str) and c.strip() for c in listed), (
                f"columns names dataset columns (a name, or names joined by |), not {columns!r}"
            )

    def test_one_score_per_completion(self, record: Any, reward: Any) -> None:
        scores_of(reward, sample_batch(record))

    def test_the_same_batch_gets_the_same_scores(self, record: Any, reward: Any) -> None:
        first = scores_of(reward, sample_batch(record))
        again = scores_of(reward, sample_batch(record))
        assert first == again, (
            f"a reward is deterministic: the same batch scored {first}, then {again} (seed any "
            "sampling it does)"
        )

    def test_empty_completions_are_scored(self, record: Any, reward: Any) -> None:
        batch = sample_batch(record)
        batch["completions"] = [""] * len(COMPLETIONS)
        batch["completion_ids"] = [[] for _ in COMPLETIONS]
        scores_of(reward, batch, "empty completions")

    def test_completions_as_messages_score_as_texts(self, record: Any, reward: Any) -> None:
        """TRL passes a chat dataset's completions as ``[{"role": "assistant", "content":
        TEXT}]``; :func:`martlet.rewards.text_of` reads both forms."""
        batch = sample_batch(record)
        texts = scores_of(reward, batch)
        batch["completions"] = [[{"role": "assistant", "content": c}] for c in COMPLETIONS]
        messages = scores_of(reward, batch, "completions as TRL's lists of messages")
        assert messages == texts, (
            f"completions as messages scored {messages}, as texts {texts}: read each with "
            "martlet.rewards.text_of(completion), which takes both forms"
        )

    def test_scores_combine_through_the_core(self, record: Any, reward: Any) -> None:
        """What the trainer does with the scores (:class:`martlet.rewards.Rewards`) accepts
        them: checked, weighted and summed."""
        from martlet.rewards import RewardFunc, Rewards

        combined = Rewards([RewardFunc(record, 0.5, reward)])(**sample_batch(record))
        assert len(combined.total) == len(COMPLETIONS)


def scores_of(reward: Any, batch: dict[str, Any], form: str = "the sample batch") -> list[Any]:
    """``reward(**batch)``, checked: a list of one finite float (or None) per completion, each
    failure an AssertionError saying what was wrong and what to return instead."""
    n = len(batch["completions"])
    try:
        got = reward(**batch)
    except Exception as exc:  # noqa: BLE001 - the contract reports what the reward raised
        raise AssertionError(
            f"the reward raised {type(exc).__name__}: {exc} on {form}"
            + (
                " (read completions with martlet.rewards.text_of: TRL passes lists of messages)"
                if "messages" in form
                else ""
            )
        ) from exc
    try:
        scores = list(got)
    except TypeError:
        raise AssertionError(
            f"the reward returned {type(got).__name__}, not a list: one score per completion"
        ) from None
    assert len(scores) == n, (
        f"one score per completion, in order: {len(scores)} scores for {n} completions ({form})"
    )
    for i, score in enumerate(scores):
        if score is None:
            continue
        assert isinstance(score, (int, float)) and not isinstance(score, bool), (
            f"score {i} is {score!r} ({type(score).__name__}): a score is a float, or None "
            "where the reward does not apply"
        )
        assert not math.isnan(score), (
            f"score {i} is NaN ({form}): return None where the reward does not apply; the "
            "trainer refuses NaN"
        )
        assert math.isfinite(score), f"score {i} is {score!r}: a score is finite"
    return scores


def _field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}
