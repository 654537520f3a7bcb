"""`martlet infer` on the tiny model: --query, batch --input/--output, the terminal chat, a run
directory alone, and bad requests."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from martlet_sdk.contracts import CommandContract

PLUGINS = ("serve", "hf", "data", "peft", "engine-pt", "train", "accel")


class TestInferCommand(CommandContract):
    @pytest.fixture
    def plugin(self):
        return "serve"

    @pytest.fixture
    def record_name(self):
        return "infer"


@pytest.fixture
def cli(martlet_manager, martlet_cli):
    martlet_manager(*PLUGINS)
    return martlet_cli


def test_query_prints_only_the_answer_and_is_deterministic(cli, tiny_model_dir):
    args = (
        "infer",
        "--model",
        str(tiny_model_dir),
        "--query",
        "What is the capital of France?",
        "--max-new-tokens",
        "8",
    )
    first, second = cli(*args), cli(*args)
    assert first.exit_code == 0, first.stderr
    assert first.stdout == second.stdout and first.stdout.endswith("\n")
    assert len(first.stdout.splitlines()) <= 8


def test_batch_inference_writes_one_answer_per_row(cli, tiny_model_dir, tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {
                    "messages": [
                        {"role": "user", "content": "Hi"},
                        {"role": "assistant", "content": "Hello!"},
                    ]
                },
                {"query": "What is two plus two?", "response": "Four."},
                {"instruction": "Name a colour.", "output": "Blue."},
            ]
        )
        + "\n"
    )
    out = tmp_path / "answers.jsonl"
    result = cli(
        "infer",
        "--model",
        str(tiny_model_dir),
        "--input",
        str(rows),
        "--output",
        str(out),
        "--max-new-tokens",
        "5",
        "--max-batch-size",
        "2",
    )
    assert result.exit_code == 0, result.stderr
    answers = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(answers) == 3
    assert answers[0]["reference"] == "Hello!" and answers[1]["reference"] == "Four."
    assert all(a["messages"][-1]["role"] == "user" and "response" in a for a in answers)
    single = cli("infer", "--model", str(tiny_model_dir), "--query", "Hi", "--max-new-tokens", "5")
    assert answers[0]["response"] == single.stdout.rstrip("\n")  # batching changes nothing


def test_a_run_directory_alone_is_enough(cli, tiny_model_dir, tmp_path):
    run = tmp_path / "run"
    trained = cli(
        "sft",
        "--model",
        str(tiny_model_dir),
        "--dataset",
        "sample-sft#8",
        "--max-steps",
        "2",
        "--output-dir",
        str(run),
        "--disable-progress-bar",
        "--system",
        "You are Aria.",
        "--learning-rate",
        "1e-2",
    )
    assert trained.exit_code == 0, trained.stderr
    result = cli(
        "infer", "--adapters", str(run), "--query", "Who are you?", "--max-new-tokens", "6"
    )
    assert result.exit_code == 0, result.stderr
    base = cli(
        "infer",
        "--model",
        str(tiny_model_dir),
        "--query",
        "Who are you?",
        "--max-new-tokens",
        "6",
        "--system",
        "You are Aria.",
    )
    assert base.exit_code == 0
    assert result.stdout != base.stdout  # the adapter changes the answer


def test_the_terminal_chat_streams_and_keeps_history(tiny_model_dir):
    env = {**os.environ, "MARTLET_PLUGINS": ",".join(PLUGINS)}
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from martlet.cli import main; sys.exit(main())",
            "infer",
            "--model",
            str(tiny_model_dir),
            "--max-new-tokens",
            "4",
        ],
        input="Hello there\nAnd again\n/clear\nOnce more\n/exit\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count(">>> ") == 3
    assert "(conversation cleared)" in proc.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--query", "hi"], "no model to run"),
        (["--port", "8080", "--model", "x"], "serving on --port is not available yet"),
        (["--model", "x", "--output", "o.jsonl"], "--output needs --input"),
        (["--model", "x", "--infer-backend", "vllm", "--query", "q"], "martlet-vllm"),
        (["--adapters", "/no/such/dir", "--query", "q"], "not found"),
        (["--model", "x", "--query", "q", "--temperature", "-1"], "--temperature"),
    ],
)
def test_bad_requests_are_clear_errors(cli, tiny_model_dir, args, message):
    args = [str(tiny_model_dir) if a == "x" else a for a in args]
    result = cli("infer", *args)
    assert result.exit_code != 0
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_batch_rows_need_no_answer(cli, tiny_model_dir, tmp_path):
    rows = tmp_path / "prompts.jsonl"
    rows.write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {
                    "messages": [
                        {"role": "system", "content": "Be brief."},
                        {"role": "user", "content": "Hi"},
                    ]
                },
                {"query": "What is two plus two?"},
                {"instruction": "Name a colour.", "input": "Not red."},
                {"conversations": [{"from": "human", "value": "Hello"}]},
            ]
        )
        + "\n"
    )
    result = cli(
        "infer", "--model", str(tiny_model_dir), "--input", str(rows), "--max-new-tokens", "3"
    )
    assert result.exit_code == 0, result.stderr
    answers = [json.loads(x) for x in result.stdout.splitlines()]
    assert [a["messages"][-1]["content"] for a in answers] == [
        "Hi",
        "What is two plus two?",
        "Name a colour.\nNot red.",
        "Hello",
    ]
    assert answers[0]["messages"][0] == {"role": "system", "content": "Be brief."}
    assert all("reference" not in a for a in answers)


def test_a_row_with_nothing_to_answer_names_its_line(cli, tiny_model_dir, tmp_path):
    rows = tmp_path / "bad.jsonl"
    rows.write_text(json.dumps({"messages": [{"role": "assistant", "content": "Hi"}]}) + "\n")
    result = cli("infer", "--model", str(tiny_model_dir), "--input", str(rows))
    assert result.exit_code != 0
    assert "bad.jsonl" in result.stderr and "line 1" in result.stderr


@pytest.mark.parametrize(
    ("native", "device_map", "dtype"),
    [("1", None, "bfloat16"), ("0", None, "float32"), ("1", "cpu", "bfloat16")],
)
def test_auto_weights_follow_the_device(martlet_manager, monkeypatch, native, device_map, dtype):
    """Inference loads weights in the device's native half dtype, float32 without one."""
    from martlet.config import build
    from martlet_serve.infer import InferConfig

    martlet_manager(*PLUGINS)
    monkeypatch.setenv("MARTLET_CPU_BF16", native)
    config = build(InferConfig, values={"model": "x", "device_map": device_map})
    assert config.loader_options()["torch_dtype"] == dtype
    explicit = build(InferConfig, values={"model": "x", "torch_dtype": "float32"})
    assert explicit.loader_options()["torch_dtype"] == "float32"
