"""The lmdeploy backend: its record, options, refusals and request mapping everywhere; the
serving contract where LMDeploy and a CUDA GPU are (tests/gpu/run_backends.sh)."""

from __future__ import annotations

import importlib.util
from types import SimpleNamespace

import pytest
from martlet.errors import ConfigError, MissingDependencyError
from martlet.generation import BadRequestError, SamplingParams
from martlet_lmdeploy.engine import LmdeployEngine
from martlet_lmdeploy.options import LmdeployOptions
from martlet_lmdeploy.request import NO_LOGPROB, to_lmdeploy, to_step
from martlet_sdk.contracts import ServingContract, serving_model_dir

HAS_LMDEPLOY = importlib.util.find_spec("lmdeploy") is not None


def cannot_run() -> str | None:
    if not HAS_LMDEPLOY:
        return "LMDeploy is not installed (it runs on CUDA only: tests/gpu/run_backends.sh)"
    import torch

    return None if torch.cuda.is_available() else "LMDeploy needs a CUDA GPU; this machine has none"


class TestLmdeployServing(ServingContract):
    @pytest.fixture
    def plugin(self):
        return "lmdeploy"

    @pytest.fixture
    def record_name(self):
        return "lmdeploy"

    @pytest.fixture
    def serving_model(self, tmp_path_factory):
        reason = cannot_run()
        if reason:
            pytest.skip(reason)
        return serving_model_dir(tmp_path_factory.mktemp("lmdeploy-model"), hidden_size=128)

    @pytest.fixture
    def serving_options(self):
        return {"max_model_len": 256, "max_batch_size": 8, "cache_max_entry_count": 0.2}


# ---------------------------------------------------------------- refusals


@pytest.mark.skipif(HAS_LMDEPLOY, reason="LMDeploy is installed here")
def test_without_lmdeploy_starting_says_what_to_install(tmp_path):
    with pytest.raises(MissingDependencyError) as missing:
        LmdeployEngine.serving(str(tmp_path))
    error = missing.value
    assert "pip install 'martlet-lmdeploy[cuda]'" in error.fix and "torch <= 2.12.1" in error.fix
    assert "CUDA GPUs only" in error.why


def test_a_cpu_device_is_refused_saying_why(tmp_path):
    with pytest.raises(ConfigError, match="CUDA GPUs only, not 'cpu'") as refused:
        LmdeployEngine.serving(str(tmp_path), device="cpu")
    assert "no CPU backend" in refused.value.why


def test_adapters_on_turbomind_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="turbomind engine serves no LoRA") as refused:
        LmdeployEngine.serving(str(tmp_path), adapters={"a": str(tmp_path)},
                               lmdeploy_engine="turbomind")  # fmt: skip
    assert "--lmdeploy-engine pytorch" in refused.value.fix


@pytest.mark.parametrize(
    ("values", "flag"),
    [
        ({"cache_max_entry_count": 0.0}, "--cache-max-entry-count"),
        ({"tensor_parallel_size": 0}, "--tensor-parallel-size"),
    ],
)
def test_bad_options_are_refused_before_lmdeploy_is_needed(tmp_path, values, flag):
    with pytest.raises(ConfigError, match=flag):
        LmdeployOptions(**values)
    with pytest.raises(ConfigError, match=flag):
        LmdeployEngine.serving(str(tmp_path), **values)


@pytest.mark.parametrize(
    "field", [("presence_penalty", 0.5), ("frequency_penalty", -0.5), ("prompt_logprobs", 1)]
)
def test_what_lmdeploy_cannot_do_is_a_bad_request_naming_it(field):
    with pytest.raises(BadRequestError) as refused:
        to_lmdeploy(SamplingParams(**dict([field])))
    assert refused.value.param == field[0]


# ---------------------------------------------------------------- its outputs back


def out(ids, total, *, finish=None, logprobs=None):
    """An output of the shape of LMDeploy's GenOut (the fields the backend reads)."""
    return SimpleNamespace(token_ids=ids, generate_token_len=total, finish_reason=finish,
                           logprobs=logprobs, response="")  # fmt: skip


def test_new_tokens_and_where_the_answer_ends():
    eos, params = frozenset({2}), SamplingParams(max_tokens=10)
    # token_ids is the tail the detokenizer still holds: it may repeat tokens already sent
    assert to_step(out([4, 5, 6], 3), params, 1, eos).token_ids == [5, 6]
    step = to_step(out([5, 2, 9], 3), params, 0, eos)
    assert (step.token_ids, step.finish_reason) == ([5, 2], "stop")
    assert to_step(out([5, 6], 2), SamplingParams(max_tokens=2), 0, eos).finish_reason == "length"
    assert to_step(out([], 0, finish="abort"), params, 0, eos).finish_reason == "abort"


def test_logprobs_sorted_and_a_missing_chosen_token_said_plainly():
    params = SamplingParams(logprobs=1)
    step = to_step(out([5, 6], 2, logprobs=[{5: -0.1, 7: -3.0}, {8: -0.2, 9: -0.9}]), params,
                   0, frozenset())  # fmt: skip
    first, second = step.logprobs
    assert (first.logprob, first.top) == (-0.1, [(5, -0.1)])
    assert (second.logprob, second.top) == (NO_LOGPROB, [(8, -0.2)])


def test_an_option_it_does_not_have_is_refused_naming_it(tmp_path):
    with pytest.raises(ConfigError, match="the lmdeploy backend has no option no_such_option"):
        LmdeployEngine.serving(str(tmp_path), no_such_option=1)
