"""The Python API (`from martlet_serve import InferEngine, InferRequest, RequestConfig`): the
server's engines in-process, sync and async, streamed or whole, with adapters by name and
training run directories, and the server's errors."""

from __future__ import annotations

import asyncio
import shutil

import pytest
import yaml
from martlet.errors import MartletError
from martlet_serve import InferEngine, InferRequest, RequestConfig
from martlet_serve.api_errors import ApiError

QUESTION = [{"role": "user", "content": "Who are you?"}]
GREEDY = RequestConfig(max_tokens=8, temperature=0)


@pytest.fixture(scope="module")
def engine(tiny_model_dir, tiny_lora_dir):
    with InferEngine(
        str(tiny_model_dir), adapters={"lora": str(tiny_lora_dir)}, max_batch_size=4
    ) as started:
        yield started


def text(response) -> str:
    choice = response.choices[0]
    return choice.message.content if response.object == "chat.completion" else choice.text


def test_chat_and_completion_in_one_call_batched(engine):
    chat, completion = engine.infer(
        [InferRequest(messages=QUESTION), InferRequest(prompt="Hello")], GREEDY
    )
    assert chat.object == "chat.completion" and chat["choices"][0]["message"]["role"] == "assistant"
    assert completion.object == "text_completion" and completion.usage.prompt_tokens >= 1
    alone = engine.infer([InferRequest(prompt="Hello")], GREEDY)[0]
    assert text(alone) == text(completion)  # batching changes nothing


def test_streaming_gives_the_same_text_in_chunks(engine):
    whole = engine.infer([InferRequest(messages=QUESTION)], GREEDY)[0]
    streamed = RequestConfig(max_tokens=8, temperature=0, stream=True)
    (chunks,) = engine.infer([InferRequest(messages=QUESTION)], streamed)
    chunks = list(chunks)
    joined = "".join(c.choices[0].delta.get("content", "") for c in chunks if c.choices)
    assert joined == text(whole)
    assert chunks[-1].usage == whole.usage


def test_async_with_adapters_by_name(engine):
    async def ask():
        return await engine.infer_async(
            [InferRequest(messages=QUESTION), InferRequest(messages=QUESTION, model="lora")],
            GREEDY,
        )

    base, lora = asyncio.run(ask())
    assert engine.models == [engine.config.model, "lora"]
    assert lora.model == "lora" and text(lora) != text(base)


def test_the_servers_errors(engine):
    with pytest.raises(ApiError) as info:
        engine.infer([InferRequest(messages=QUESTION, model="nope")])
    assert info.value.status == 404
    with pytest.raises(ApiError) as info:
        engine.infer([InferRequest(prompt="x")], RequestConfig(n=100))
    assert info.value.status == 400 and info.value.param == "n"
    with pytest.raises(ApiError) as info:
        engine.infer([InferRequest(messages=[{"role": "robot", "content": "x"}])])
    assert info.value.status == 422
    with pytest.raises(MartletError, match="messages or a prompt"):
        engine.infer([InferRequest()])

    async def inside_a_loop():
        engine.infer([InferRequest(prompt="x")])

    with pytest.raises(MartletError, match="infer_async"):
        asyncio.run(inside_a_loop())


def test_a_lora_run_directory_is_its_base_model_with_its_adapter_and_system_prompt(
    tmp_path, tiny_model_dir, tiny_lora_dir, engine
):
    run = tmp_path / "run"
    shutil.copytree(tiny_lora_dir, run)
    config = {"model": str(tiny_model_dir), "tuner": "lora", "system": "You are Aria."}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    system = [{"role": "system", "content": "You are Aria."}]
    with InferEngine(str(run), served_model_name="aria") as from_run:
        assert from_run.models == ["aria"]
        (answer,) = from_run.infer([InferRequest(messages=QUESTION)], GREEDY)
    lora, base = engine.infer(
        [
            InferRequest(messages=system + QUESTION, model="lora"),
            InferRequest(messages=system + QUESTION),
        ],
        GREEDY,
    )
    assert text(answer) == text(lora) != text(base)


def test_a_run_with_a_damaged_adapter_is_named_before_anything_loads(tmp_path, tiny_lora_dir):
    run = tmp_path / "run"
    shutil.copytree(tiny_lora_dir, run)
    (run / "config.yaml").write_text(yaml.safe_dump({"model": "unused", "tuner": "lora"}))
    (run / "adapter_model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(MartletError, match="adapter_model.safetensors"):
        InferEngine(str(run))
