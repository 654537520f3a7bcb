"""The sglang backend: its record, options, refusals and request mapping everywhere; the
serving contract where SGLang and a CUDA GPU are (tests/gpu/run_backends.sh)."""

from __future__ import annotations

import importlib.util

import pytest
from martlet.errors import ConfigError, MissingDependencyError
from martlet.generation import BadRequestError, SamplingParams
from martlet_sdk.contracts import ServingContract, serving_model_dir
from martlet_sglang.engine import SglangEngine
from martlet_sglang.options import SglangOptions
from martlet_sglang.request import new_tokens, prompt_logprobs, to_sglang

HAS_SGLANG = importlib.util.find_spec("sglang") is not None


def cannot_run() -> str | None:
    if not HAS_SGLANG:
        return "SGLang is not installed (it runs on CUDA only: tests/gpu/run_backends.sh)"
    import torch

    return None if torch.cuda.is_available() else "SGLang needs a CUDA GPU; this machine has none"


class TestSglangServing(ServingContract):
    @pytest.fixture
    def plugin(self):
        return "sglang"

    @pytest.fixture
    def record_name(self):
        return "sglang"

    @pytest.fixture
    def serving_model(self, tmp_path_factory):
        reason = cannot_run()
        if reason:
            pytest.skip(reason)
        return serving_model_dir(tmp_path_factory.mktemp("sglang-model"), hidden_size=128)

    @pytest.fixture
    def serving_options(self):
        return {"max_model_len": 256, "max_batch_size": 8, "mem_fraction_static": 0.3,
                "torch_dtype": "float32"}  # fmt: skip


# ---------------------------------------------------------------- refusals


@pytest.mark.skipif(HAS_SGLANG, reason="SGLang is installed here")
def test_without_sglang_starting_says_what_to_install(tmp_path):
    with pytest.raises(MissingDependencyError) as missing:
        SglangEngine.serving(str(tmp_path))
    error = missing.value
    assert "pip install 'martlet-sglang[cuda]'" in error.fix and "torch 2.14.1" in error.fix
    assert "CUDA GPUs only" in error.why


def test_a_cpu_device_is_refused_saying_why(tmp_path):
    with pytest.raises(ConfigError, match="CUDA GPUs only, not 'cpu'") as refused:
        SglangEngine.serving(str(tmp_path), device="cpu")
    assert "no CPU backend" in refused.value.why and "--infer-backend pt" in refused.value.fix


@pytest.mark.parametrize(
    ("values", "flag"),
    [
        ({"mem_fraction_static": 1.0}, "--mem-fraction-static"),
        ({"tensor_parallel_size": 0}, "--tensor-parallel-size"),
        ({"max_lora_rank": 0}, "--max-lora-rank"),
    ],
)
def test_bad_options_are_refused_before_sglang_is_needed(tmp_path, values, flag):
    with pytest.raises(ConfigError, match=flag):
        SglangOptions(**values)
    with pytest.raises(ConfigError, match=flag):
        SglangEngine.serving(str(tmp_path), **values)


# ---------------------------------------------------------------- request mapping


def test_params_map_onto_sglangs_sampling_params():
    params = SamplingParams(max_tokens=7, temperature=0.5, top_k=0, seed=3, logprobs=2)
    keywords = to_sglang(params, prompt_len=5)
    sampling = keywords["sampling_params"]
    assert sampling["max_new_tokens"] == 7 and sampling["top_k"] == -1
    assert sampling["sampling_seed"] == 3 and sampling["ignore_eos"] is True
    assert keywords["return_logprob"] and keywords["top_logprobs_num"] == 2
    assert keywords["logprob_start_len"] == 5, "no prompt log-probabilities asked"
    asks_prompt = to_sglang(SamplingParams(prompt_logprobs=1), prompt_len=5)
    assert asks_prompt["logprob_start_len"] == 0
    assert to_sglang(SamplingParams(), prompt_len=5)["return_logprob"] is False


def chunk(ids, total, *, finish=None, logprobs=None):
    meta = {"completion_tokens": total, "finish_reason": finish and {"type": finish}}
    if logprobs:
        meta["output_token_logprobs"] = [(lp, t, None) for t, lp in logprobs]
        meta["output_top_logprobs"] = [[(lp, t, None), (lp - 1, 99, None)] for t, lp in logprobs]
    return {"output_ids": ids, "meta_info": meta}


@pytest.mark.parametrize("cumulative", [True, False])
def test_new_tokens_whether_chunks_carry_all_or_only_the_new(cumulative):
    params = SamplingParams(max_tokens=10)
    first = new_tokens(chunk([5, 6], 2), params, 0, frozenset({2}))
    second = new_tokens(chunk([5, 6, 7] if cumulative else [7], 3), params, 2, frozenset({2}))
    assert (first.token_ids, second.token_ids) == ([5, 6], [7])
    assert first.finish_reason is None and second.finish_reason is None


def test_the_end_of_sequence_token_ends_the_answer_and_is_kept():
    eos = frozenset({2})
    step = new_tokens(chunk([5, 2, 9], 3), SamplingParams(max_tokens=10), 0, eos)
    assert (step.token_ids, step.finish_reason) == ([5, 2], "stop")
    ignored = new_tokens(chunk([5, 2, 9], 3), SamplingParams(ignore_eos=True), 0, eos)
    assert (ignored.token_ids, ignored.finish_reason) == ([5, 2, 9], None)
    stop = new_tokens(chunk([5, 6], 2), SamplingParams(stop_token_ids=(6,)), 0, eos)
    assert (stop.token_ids, stop.finish_reason) == ([5, 6], "stop")
    length = new_tokens(chunk([5, 6], 2), SamplingParams(max_tokens=2), 0, eos)
    assert length.finish_reason == "length"
    aborted = new_tokens(chunk([], 0, finish="abort"), SamplingParams(), 0, eos)
    assert aborted.finish_reason == "abort"


def test_logprobs_come_back_as_token_logprobs():
    params = SamplingParams(logprobs=2)
    step = new_tokens(chunk([5, 6], 2, logprobs=[(5, -0.5), (6, -1.5)]), params, 0, frozenset())
    assert [(lp.token_id, lp.logprob) for lp in step.logprobs] == [(5, -0.5), (6, -1.5)]
    assert step.logprobs[0].top == [(5, -0.5), (99, -1.5)]
    meta = {"input_token_logprobs": [(None, 1, None), (-2.0, 4, None)],
            "input_top_logprobs": [None, [(-1.0, 7, None), (-2.0, 4, None)]]}  # fmt: skip
    entries = prompt_logprobs({"meta_info": meta}, [1, 4], k=1)
    assert entries[0] is None and entries[1].logprob == -2.0 and entries[1].top == [(7, -1.0)]


def test_bad_params_are_refused_at_submit_without_sglang():
    """The checks of a request need no engine library: the same BadRequestError as pt."""
    from martlet_sglang.request import check_request

    class Shape:
        vocab_size, max_model_len = 10, 8

        def adapters(self):
            return ["a"]

    with pytest.raises(BadRequestError) as refused:
        check_request([1], SamplingParams(top_p=0), None, Shape())
    assert refused.value.param == "top_p"
    for prompt, adapter in (([], None), ([11], None), ([1] * 8, None), ([1], "b")):
        with pytest.raises(BadRequestError):
            check_request(prompt, SamplingParams(), adapter, Shape())


def test_an_option_it_does_not_have_is_refused_naming_it(tmp_path):
    with pytest.raises(ConfigError, match="the sglang backend has no option no_such_option"):
        SglangEngine.serving(str(tmp_path), no_such_option=1)
