"""The rewards kind in the core: RewardRecord, the list selector --reward-funcs composing each
named reward's options, --reward-weights, the checks before anything loads, the columns check,
and the combination of scores (None left out of the weighted sum, as TRL's nansum does)."""

from __future__ import annotations

import dataclasses
import math

import pytest
from martlet import rewards
from martlet.config import build, option, parse_flags
from martlet.errors import ConfigError, MartletError, RecordError, UnknownNameError
from martlet.interfaces import Reward
from martlet.records import KINDS, RewardRecord, check_kind

PLUGIN = '''
    from dataclasses import dataclass

    from martlet import hookimpl
    from martlet.config import option, require
    from martlet.records import RewardRecord

    MARTLET_API = 1


    @dataclass(kw_only=True)
    class ExactOptions:
        """Exact answers."""

        exact_column: str | None = option(None, help="The column of the answer.")
        exact_ignore_case: bool = option(False, help="Compare without case.")


    @dataclass(kw_only=True)
    class LengthOptions:
        """Length."""

        length_target: int = option(10, help="The best length.")

        def __post_init__(self):
            require(self.length_target >= 1, "length-target", self.length_target, "1+", "10")


    class Exact:
        def __init__(self, *, exact_column=None, exact_ignore_case=False, **run):
            self.column = exact_column or "solution"
            self.columns = (self.column,)
            self.fold = str.lower if exact_ignore_case else str
            self.run = run

        def __call__(self, prompts, completions, **kwargs):
            return [
                None if ref is None else float(self.fold(c) == self.fold(ref))
                for c, ref in zip(completions, kwargs[self.column])
            ]


    class Length:
        def __init__(self, *, length_target=10, **_):
            self.target = length_target

        def __call__(self, prompts, completions, **kwargs):
            return [-abs(len(ids) - self.target) for ids in kwargs["completion_ids"]]


    class Broken:
        def __init__(self, **_):
            pass

        def __call__(self, prompts, completions, **kwargs):
            return BROKEN_ANSWER


    BROKEN_ANSWER = [1.0]


    class Raising:
        def __init__(self, **_):
            pass

        def __call__(self, prompts, completions, **kwargs):
            return [len(c) / 0 for c in completions]


    class Unreachable:
        def __init__(self, **_):
            pass

        def __call__(self, prompts, completions, **kwargs):
            from martlet.errors import MartletError

            raise MartletError("cannot reach the scoring server", fix="start it")


    class Unbuildable:
        def __init__(self, **_):
            raise OSError("no such file: weights.bin")


    @hookimpl
    def martlet_rewards():
        yield RewardRecord(
            name="exact", impl=__name__ + ":Exact", options=__name__ + ":ExactOptions",
            columns=("solution",), summary="1 when the completion is the solution",
        )
        yield RewardRecord(
            name="length", impl=__name__ + ":Length", options=__name__ + ":LengthOptions",
            aliases=("len",), summary="minus the distance from a target length",
        )
        yield RewardRecord(name="broken", impl=__name__ + ":Broken", summary="answers badly")
        yield RewardRecord(name="raising", impl=__name__ + ":Raising", summary="divides by 0")
        yield RewardRecord(
            name="unreachable", impl=__name__ + ":Unreachable", summary="its server is down"
        )
        yield RewardRecord(
            name="unbuildable", impl=__name__ + ":Unbuildable", summary="cannot be built"
        )
        yield RewardRecord(
            name="needs-pkg", impl=__name__ + ":Length", requires=("no-such-package-xyz",),
            summary="needs a package that is not installed",
        )
'''


@dataclasses.dataclass(kw_only=True)
class GrpoLike(rewards.RewardOptions):
    """A training command that generates."""

    max_completion_length: int = option(32, help="Most tokens per completion.")


@pytest.fixture
def plugin(site, martlet_manager):
    site.module("fake_rewards_plugin", PLUGIN)
    import fake_rewards_plugin

    martlet_manager(fake_rewards_plugin)
    return fake_rewards_plugin


def config(*args: str) -> GrpoLike:
    return build(GrpoLike, flags=parse_flags(GrpoLike, list(args)).values)


def test_the_record_kind():
    assert KINDS["rewards"] is RewardRecord and check_kind("reward") is RewardRecord
    record = RewardRecord(name="r", impl="m:f", columns="solution|answer")
    assert record.columns == ("solution|answer",)
    for bad in (("solution|",), ("",), (" x",)):
        with pytest.raises(RecordError, match="bad column"):
            RewardRecord(name="r", impl="m:f", columns=bad)


def test_reward_funcs_compose_each_named_rewards_options(plugin):
    cfg = config(
        "--reward-funcs", "exact", "len", "--exact-ignore-case", "--length-target", "4",
        "--reward-weights", "1", "0.5",
    )  # fmt: skip
    assert cfg.reward_funcs == ["exact", "len"] and cfg.reward_weights == [1.0, 0.5]
    assert cfg.exact_ignore_case is True and cfg.length_target == 4
    built = rewards.build(cfg, device="cpu")
    assert built.names == ["exact", "length"] and built.weights == [1.0, 0.5]
    exact = built.funcs[0].fn
    assert exact.run == {"max_completion_length": 32, "device": "cpu"}  # the run's keywords
    # names joined by commas, as every list selector takes them
    assert config("--reward-funcs", "exact,length").reward_funcs == ["exact", "length"]


def test_an_option_of_a_reward_not_named_is_refused_naming_it(plugin):
    with pytest.raises(ConfigError) as refused:
        config("--reward-funcs", "exact", "--length-target", "3")
    assert "--length-target is an option of reward length" in str(refused.value)
    assert "pass --reward-funcs length (with the others you want)" in str(refused.value)
    with pytest.raises(ConfigError, match="--length-target must be 1\\+"):
        config("--reward-funcs", "length", "--length-target", "0")


def test_checks_before_anything_loads(plugin):
    with pytest.raises(ConfigError, match="no reward function") as none:
        rewards.check(config())
    assert (
        "installed: broken, exact, length, needs-pkg, raising, unbuildable, unreachable"
        in none.value.fix
    )
    with pytest.raises(ConfigError, match="2 weights for 1 reward function") as count:
        rewards.check(config("--reward-funcs", "exact", "--reward-weights", "1", "2"))
    assert "--reward-weights 1" in count.value.fix
    with pytest.raises(ConfigError, match="must be finite"):
        rewards.check(config("--reward-funcs", "exact", "--reward-weights", "nan"))
    with pytest.raises(UnknownNameError, match="unknown reward 'exakt'") as unknown:
        rewards.check(config("--reward-funcs", "exakt"))
    assert "did you mean 'exact'" in unknown.value.why
    with pytest.raises(ConfigError, match="names the reward 'length' twice"):
        rewards.check(config("--reward-funcs", "length", "len"))
    with pytest.raises(MartletError, match="needs no-such-package-xyz") as missing:
        rewards.check(config("--reward-funcs", "needs-pkg"))
    assert missing.value.fix == "pip install 'no-such-package-xyz'"


def test_a_name_of_an_uninstalled_provider_names_its_package(plugin):
    with pytest.raises(UnknownNameError) as info:
        rewards.check(config("--reward-funcs", "accuracy"))
    assert info.value.fix == "it is provided by martlet-rewards: pip install martlet-rewards"


def test_the_dataset_must_have_the_columns_the_rewards_read(plugin):
    built = rewards.build(config("--reward-funcs", "exact", "length"))
    assert built.columns() == {"exact": ("solution",), "length": ()}
    built.check_columns(["prompt", "solution"])
    with pytest.raises(ConfigError) as refused:
        built.check_columns(["messages", "answer"], dataset="sample-arith")
    err = refused.value
    assert "the reward 'exact' reads the column 'solution', which sample-arith does not" in str(err)
    assert "answer, messages" in err.why and "--exact-column" in err.fix
    # the instance's own columns (from its options) win over the record's
    built = rewards.build(config("--reward-funcs", "exact", "--exact-column", "answer"))
    built.check_columns(["answer"])
    assert built.columns() == {"exact": ("answer",)}


def test_alternative_columns():
    func = rewards.RewardFunc(
        RewardRecord(name="a", impl="m:f", columns=("solution|answer",)), 1, object()
    )
    built = rewards.Rewards([func])
    built.check_columns(["answer"])
    with pytest.raises(ConfigError, match="'solution' or 'answer'"):
        built.check_columns(["question"])


def test_scores_are_weighted_and_none_is_left_out_of_the_sum(plugin):
    built = rewards.build(
        config(
            "--reward-funcs", "exact", "length", "--reward-weights", "2", "0.5",
            "--length-target", "3",
        )
    )  # fmt: skip
    scores = built(
        prompts=[[{"role": "user", "content": "q"}]] * 3,
        completions=["yes", "no", "yes"],
        completion_ids=[[1, 2, 3], [1], [1, 2, 3, 4, 5]],
        solution=["yes", "yes", None],
    )
    assert scores.per_func == {"exact": [1.0, 0.0, None], "length": [0.0, -2.0, -2.0]}
    assert scores.total == [2.0, -1.0, -1.0]  # the None of row 3 is left out, not zero
    metrics = scores.metrics()
    assert metrics["rewards/exact/mean"] == 0.5
    assert metrics["rewards/exact/std"] == pytest.approx(math.sqrt(0.5))
    assert metrics["rewards/length/mean"] == pytest.approx(-4 / 3)
    assert metrics["reward"] == pytest.approx(0.0) and "reward_std" in metrics


def test_a_completion_no_reward_applies_to_gets_none(plugin):
    built = rewards.build(config("--reward-funcs", "exact"))
    scores = built(
        prompts=["q", "q"], completions=["a", "b"], completion_ids=[[], []], solution=[None, "b"]
    )
    assert scores.total == [None, 1.0]
    assert scores.metrics() == {
        "rewards/exact/mean": 1.0, "rewards/exact/std": 0.0, "reward": 1.0, "reward_std": 0.0,
    }  # fmt: skip
    empty = built(prompts=["q"], completions=["a"], completion_ids=[[]], solution=[None])
    assert empty.metrics() == {}  # nothing applied: no NaN in metrics.jsonl


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ([1.0], "returned 1 scores for 2 completions"),
        ([1.0, "high"], "returned 'high' for completion 1, not a number"),
        ([1.0, math.inf], "returned inf for completion 1"),
        ([math.nan, 2.0], "returned NaN for completion 0"),
        ([1.0, float("nan")], "returned NaN for completion 1"),
        (3.0, "returned float, not a list of scores"),
    ],
)
def test_bad_scores_are_errors_naming_the_reward(plugin, answer, message):
    plugin.BROKEN_ANSWER = answer
    built = rewards.build(config("--reward-funcs", "broken"))
    with pytest.raises(MartletError, match=message) as err:
        built(prompts=["a", "b"], completions=["a", "b"], completion_ids=[[], []])
    assert "the reward 'broken'" in str(err.value)


def test_nan_is_an_error_saying_to_return_none(plugin):
    # None, not NaN, says "does not apply": a NaN is a bug in the reward, named
    plugin.BROKEN_ANSWER = [2.0, math.nan]
    built = rewards.build(config("--reward-funcs", "exact", "broken"))
    with pytest.raises(MartletError) as err:
        built(prompts=["a", "b"], completions=["a", "b"], solution=["a", "b"])
    assert err.value.what == "the reward 'broken' returned NaN for completion 1"
    assert "return None where the reward does not apply" in err.value.fix
    plugin.BROKEN_ANSWER = [None, 2]
    scores = built(prompts=["a", "b"], completions=["a", "b"], solution=["a", None])
    assert scores.total == [1.0, 2.0]  # None: left out of the sum


def test_a_reward_that_raises_is_an_error_naming_it(plugin):
    built = rewards.build(
        config("--reward-funcs", "exact", "raising", "--reward-weights", "1", "2")
    )
    with pytest.raises(MartletError) as err:
        built(prompts=["q"], completions=["a"], solution=["a"])
    assert type(err.value) is MartletError  # shown without a traceback
    assert err.value.what == "the reward 'raising' failed on a batch of 1 completions"
    assert err.value.why == "ZeroDivisionError: division by zero"
    assert "fake_rewards_plugin" in err.value.fix and "--reward-funcs" in err.value.fix
    assert isinstance(err.value.cause, ZeroDivisionError)  # the traceback, for --debug


def test_a_martlet_error_of_a_reward_says_which_reward_it_is(plugin):
    built = rewards.build(config("--reward-funcs", "unreachable"))
    with pytest.raises(MartletError) as err:
        built(prompts=["q"], completions=["a"])
    assert err.value.what == "the reward 'unreachable': cannot reach the scoring server"
    assert err.value.fix == "start it"


def test_a_reward_that_cannot_be_built_is_an_error_naming_it(plugin):
    with pytest.raises(MartletError) as err:
        rewards.build(config("--reward-funcs", "unbuildable"))
    assert err.value.what == "cannot build the reward 'unbuildable'"
    assert err.value.why == "OSError: no such file: weights.bin"


def test_a_missing_column_at_call_time_is_an_error(plugin):
    built = rewards.build(config("--reward-funcs", "exact"))
    with pytest.raises(MartletError, match="got no column 'solution'"):
        built(prompts=["a"], completions=["a"], completion_ids=[[]])


def test_texts_and_messages_read_alike():
    assert rewards.text_of("hi") == "hi"
    assert rewards.text_of([{"role": "assistant", "content": "hi"}]) == "hi"
    assert (
        rewards.text_of([{"role": "assistant", "content": [{"type": "text", "text": "hi"}]}])
        == "hi"
    )
    assert rewards.text_of(None) == ""
    assert rewards.conversation_of("q") == [{"role": "user", "content": "q"}]
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]
    assert rewards.conversation_of(messages) == messages


def test_the_reward_protocol_is_a_callable():
    class Mine:
        def __call__(self, prompts, completions, **kwargs):
            return [0.0] * len(completions)

    assert isinstance(Mine(), Reward)
