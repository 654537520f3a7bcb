"""RewardContract passes a good reward and catches the ways a reward breaks the trainer's
calling convention, each with a message that says what was wrong and what to return."""

from __future__ import annotations

import itertools
import math
import sys
import types
from dataclasses import dataclass

import pytest
from martlet import hookimpl
from martlet.config import option
from martlet.records import RewardRecord
from martlet.rewards import text_of
from martlet_sdk.contracts import RewardContract

# the implementations the records below name, importable by their import strings
IMPLS = types.ModuleType("_martlet_sdk_reward_contract_impls")
sys.modules[IMPLS.__name__] = IMPLS


@dataclass(kw_only=True)
class _KeywordOptions:
    """keyword: completions that say a word"""

    keyword_word: str = option("paris", help="The word a completion should say.")


class _Keyword:
    """The good reward: 1 when the completion says the word or its row's solution, else 0;
    None for a row without a solution; texts and messages alike."""

    def __init__(self, *, keyword_word: str = "paris", **run):
        self.word = keyword_word
        self.run = run

    def __call__(self, prompts, completions, **kwargs):
        out = []
        for completion, solution in zip(completions, kwargs["solution"], strict=True):
            text = text_of(completion).lower()
            if solution is None:
                out.append(None)
            else:
                out.append(float(self.word in text or str(solution).lower() in text))
        return out


class _OneShort(_Keyword):
    """Drops the last completion's score."""

    def __call__(self, prompts, completions, **kwargs):
        return super().__call__(prompts, completions, **kwargs)[:-1]


class _Strings(_Keyword):
    """Scores as text."""

    def __call__(self, prompts, completions, **kwargs):
        return [str(s) for s in super().__call__(prompts, completions, **kwargs)]


class _NanForEmpty(_Keyword):
    """NaN where it means "does not apply" (None is the way to say it)."""

    def __call__(self, prompts, completions, **kwargs):
        scores = super().__call__(prompts, completions, **kwargs)
        return [math.nan if not text_of(c) else s for c, s in zip(completions, scores, strict=True)]


class _Drifting(_Keyword):
    """A score that changes with every call: state leaks between batches."""

    def __init__(self, **options):
        super().__init__(**options)
        self.calls = itertools.count()

    def __call__(self, prompts, completions, **kwargs):
        bonus = next(self.calls) * 0.1
        return [s + bonus for s in super().__call__(prompts, completions, **kwargs)]


class _LengthOfWhatever:
    """len(completion): the text's length for a text, 1 for TRL's list of one message."""

    def __init__(self, **_):
        pass

    def __call__(self, prompts, completions, **kwargs):
        return [float(len(c)) for c in completions]


class _TextOnly:
    """Calls a string method on each completion: fails on TRL's lists of messages."""

    def __init__(self, **_):
        pass

    def __call__(self, prompts, completions, **kwargs):
        return [float("<answer>" in c.lower()) for c in completions]


for _name, _obj in list(globals().items()):
    if _name.startswith("_") and isinstance(_obj, type) and _obj.__module__ == __name__:
        setattr(IMPLS, _name.lstrip("_"), _obj)


class Rewards:
    @hookimpl
    def martlet_rewards(self):
        def keyword_like(name, impl):
            return RewardRecord(
                name=name, impl=f"{IMPLS.__name__}:{impl}",
                options=f"{IMPLS.__name__}:KeywordOptions", columns=("solution|answer",),
                summary="A reward of the contract's tests.",
            )  # fmt: skip

        yield keyword_like("keyword", "Keyword")
        yield keyword_like("one-short", "OneShort")
        yield keyword_like("strings", "Strings")
        yield keyword_like("nan-for-empty", "NanForEmpty")
        yield keyword_like("drifting", "Drifting")
        for name, impl in (("length-of-whatever", "LengthOfWhatever"), ("text-only", "TextOnly")):
            yield RewardRecord(
                name=name, impl=f"{IMPLS.__name__}:{impl}", summary="A reward of the tests."
            )


def _fails(check: str, match: str):
    """The contract's ``check``, expected to fail with a message matching ``match``."""

    def test(self, record, reward):
        with pytest.raises(AssertionError, match=match):
            getattr(RewardContract, check)(self, record, reward)

    test.__name__ = check
    return test


class _Case(RewardContract):
    @pytest.fixture
    def plugin(self):
        return Rewards()


class TestGoodReward(_Case):
    """Every check passes (the declared option reaches a command that selects it too)."""

    @pytest.fixture
    def record_name(self):
        return "keyword"

    @pytest.fixture
    def reward_options(self):
        return {"keyword_word": "42"}

    def test_options_and_the_run_reach_the_reward(self, reward):
        assert reward.word == "42"  # reward_options, through the options class
        assert reward.run == {"max_completion_length": 64, "device": "cpu"}


SHORT = "one score per completion, in order: 5 scores for 6 completions"


class TestWrongNumberOfScores(_Case):
    @pytest.fixture
    def record_name(self):
        return "one-short"

    test_one_score_per_completion = _fails(
        "test_one_score_per_completion", SHORT + " \\(the sample batch\\)"
    )
    test_empty_completions_are_scored = _fails(
        "test_empty_completions_are_scored", SHORT + " \\(empty completions\\)"
    )
    test_the_same_batch_gets_the_same_scores = _fails(
        "test_the_same_batch_gets_the_same_scores", SHORT
    )
    test_completions_as_messages_score_as_texts = _fails(
        "test_completions_as_messages_score_as_texts", SHORT
    )

    def test_scores_combine_through_the_core(self, record, reward):
        from martlet.errors import MartletError

        # what the trainer would say
        with pytest.raises(MartletError, match="the reward 'one-short' returned 5 scores for 6"):
            super().test_scores_combine_through_the_core(record, reward)


STRING = "score 0 is '1.0' \\(str\\): a score is a float, or None where the reward does not apply"


class TestStringScores(_Case):
    @pytest.fixture
    def record_name(self):
        return "strings"

    test_one_score_per_completion = _fails("test_one_score_per_completion", STRING)
    test_empty_completions_are_scored = _fails(
        "test_empty_completions_are_scored", "score 0 is '0.0' \\(str\\)"
    )
    test_the_same_batch_gets_the_same_scores = _fails(
        "test_the_same_batch_gets_the_same_scores", STRING
    )
    test_completions_as_messages_score_as_texts = _fails(
        "test_completions_as_messages_score_as_texts", STRING
    )
    # (the trainer itself reads "1.0" as 1.0: test_scores_combine_through_the_core passes;
    # the contract is the stricter of the two)


NAN = "score 2 is NaN \\({}\\): return None where the reward does not apply"


class TestNanScores(_Case):
    @pytest.fixture
    def record_name(self):
        return "nan-for-empty"

    test_one_score_per_completion = _fails(
        "test_one_score_per_completion", NAN.format("the sample batch")
    )
    test_empty_completions_are_scored = _fails(
        "test_empty_completions_are_scored", NAN.replace("2", "0").format("empty completions")
    )
    test_the_same_batch_gets_the_same_scores = _fails(
        "test_the_same_batch_gets_the_same_scores", NAN.format("the sample batch")
    )
    test_completions_as_messages_score_as_texts = _fails(
        "test_completions_as_messages_score_as_texts", NAN.format("the sample batch")
    )

    def test_scores_combine_through_the_core(self, record, reward):
        from martlet.errors import MartletError

        with pytest.raises(MartletError, match="the reward 'nan-for-empty' returned NaN for comp"):
            super().test_scores_combine_through_the_core(record, reward)


class TestNondeterministic(_Case):
    @pytest.fixture
    def record_name(self):
        return "drifting"

    test_the_same_batch_gets_the_same_scores = _fails(
        "test_the_same_batch_gets_the_same_scores",
        "a reward is deterministic: the same batch scored \\[1.0, 0.0, 0.0, 1.0, 1.0, 0.0\\], "
        "then \\[1.1, 0.1, ",
    )
    test_completions_as_messages_score_as_texts = _fails(
        "test_completions_as_messages_score_as_texts", "completions as messages scored \\[1.1, "
    )


class TestMessagesScoredDifferently(_Case):
    @pytest.fixture
    def record_name(self):
        return "length-of-whatever"

    test_completions_as_messages_score_as_texts = _fails(
        "test_completions_as_messages_score_as_texts",
        "completions as messages scored \\[1.0, 1.0, 1.0, 1.0, 1.0, 1.0\\], as texts \\[59.0, "
        ".*read each with martlet.rewards.text_of",
    )


class TestFailsOnMessages(_Case):
    @pytest.fixture
    def record_name(self):
        return "text-only"

    def test_completions_as_messages_score_as_texts(self, record, reward):
        with pytest.raises(AssertionError) as failed:
            super().test_completions_as_messages_score_as_texts(record, reward)
        message = str(failed.value)
        assert "the reward raised AttributeError: 'list' object has no attribute 'lower'" in (
            message
        )
        assert "on completions as TRL's lists of messages" in message
        assert "read completions with martlet.rewards.text_of" in message


SCORE = """
import json, sys
from martlet import rewards
from martlet.config import build, parse_flags

config = build(rewards.RewardOptions, flags=parse_flags(rewards.RewardOptions, sys.argv[1:]).values)
built = rewards.build(config, device="cpu")
scores = built(
    prompts=["q"] * 3,
    completions=["a b c", "a", [
        {"role": "assistant", "content": "<think>x</think><answer>y</answer>"}
    ]],
    completion_ids=[[1], [1], [1]],
)
print(json.dumps({"names": built.names, "per_func": scores.per_func, "total": scores.total}))
"""


@pytest.mark.slow
def test_the_rewards_scaffold_installs_scores_and_passes_its_contract(tmp_path):
    """`martlet plugin new NAME --kind rewards` writes a package that installs, lists, passes
    every check of its contract, scores through `martlet.rewards` with its option next to a
    built-in reward, and whose option `martlet rlhf --method grpo` lists and refuses as it
    says."""
    import json
    import re
    import subprocess

    from martlet_sdk.scaffold import new_plugin
    from martlet_sdk.testing import env_with, install_into, run_cli

    root = new_plugin("acme-length", "rewards", tmp_path / "src")
    env = env_with(install_into([root], tmp_path / "site"))

    listed = run_cli("plugins", "--kind", "rewards", "--json", env=env, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    row = {p["name"]: p for p in json.loads(listed.stdout)}["acme-length"]
    assert row["status"] == "ok" and row["distribution"] == "martlet-acme-length", row
    assert row["records"]["rewards"] == ["acme-length"]

    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider",
         "-p", "no:randomly", str(root / "tests")],
        capture_output=True, text=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert tests.returncode == 0, tests.stdout[-4000:]
    assert "SKIPPED" not in tests.stdout and "FAILED" not in tests.stdout, tests.stdout[-4000:]
    for check in (
        "test_entry_module_imports_no_heavy_library",
        "test_declared_options_reach_a_command_that_selects_the_record",
        "test_it_is_a_reward",
        "test_one_score_per_completion",
        "test_the_same_batch_gets_the_same_scores",
        "test_empty_completions_are_scored",
        "test_completions_as_messages_score_as_texts",
        "test_scores_combine_through_the_core",
    ):
        assert re.search(rf"^PASSED \S+::TestAcmeLength::{check}$", tests.stdout, re.M), check

    scored = subprocess.run(
        [sys.executable, "-c", SCORE, "--reward-funcs", "acme-length", "format",
         "--target-words", "3", "--reward-weights", "1", "2"],
        capture_output=True, text=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert scored.returncode == 0, scored.stderr
    got = json.loads(scored.stdout)
    assert got["names"] == ["acme-length", "format"]
    assert got["per_func"]["acme-length"] == pytest.approx([0.0, -2 / 3, -2 / 3])
    assert got["per_func"]["format"] == [0.0, 0.0, 1.0]
    assert got["total"] == pytest.approx([0.0, -2 / 3, 2 - 2 / 3])

    grpo = ("rlhf", "--method", "grpo")
    shown = run_cli(*grpo, "--reward-funcs", "acme-length", "--help", env=env, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "--target-words INT" in shown.stdout and "(martlet-acme-length)" in shown.stdout
    refused = run_cli(
        *grpo, "--model", "m", "--dataset", "rows.jsonl", "--reward-funcs", "format",
        "--target-words", "3", "--print-config", env=env, cwd=tmp_path,
    )  # fmt: skip
    assert refused.returncode == 2, refused.stderr
    assert "--target-words is an option of reward acme-length (martlet-acme-length)" in (
        refused.stderr
    )
    assert "pass --reward-funcs acme-length" in refused.stderr
