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
        (["--port", "8080", "--model", "x", "--query", "hi"], "--query does not apply with --port"),
        (["--model", "x", "--output", "o.jsonl"], "--output needs --input"),
        (["--model", "x", "--infer-backend", "vllm", "--query", "q"], "martlet-vllm"),
        (["--adapters", "/no/such/dir", "--query", "q"], "not found"),
        (["--model", "x", "--query", "q", "--temperature", "-1"], "--temperature"),
        (
            ["--model", "x", "--query", "q", "--device", "cpu", "--device-map", "cpu"],
            "--device and --device-map both say where the model goes",
        ),
        (["--model", "x", "--query", "q", "--device", "tpu9"], "unknown accelerator 'tpu9'"),
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


# ---------------------------------------------------------------------- damaged run directories


@pytest.fixture(scope="module")
def trained_run(tiny_model_dir, tmp_path_factory):
    """A LoRA run directory trained once through the CLI, copied by the tests that damage it."""
    from martlet.manager import set_manager
    from martlet_sdk.isolation import isolated_manager
    from martlet_sdk.runner import run_cli

    run = tmp_path_factory.mktemp("trained") / "run"
    previous = set_manager(isolated_manager(*PLUGINS))
    try:
        result = run_cli(
            [
                "sft",
                "--model",
                str(tiny_model_dir),
                "--dataset",
                "sample-sft#8",
                "--max-steps",
                "1",
                "--output-dir",
                str(run),
                "--disable-progress-bar",
            ]
        )
    finally:
        set_manager(previous)
    assert result.exit_code == 0, result.stderr
    assert (run / "adapter_model.safetensors").is_file()
    return run


def test_stdout_carries_only_the_answers_whatever_the_libraries_print(trained_run, tmp_path):
    """Batch answers on stdout are JSON Lines and nothing else. Found broken: with gptqmodel
    installed (martlet-gptq), PEFT imports it while the adapter loads, and its start-up banner
    (and a newline at exit) went to stdout between the answers."""
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"query": "Hi"}\n{"query": "Who are you?"}\n', encoding="utf-8")
    env = {**os.environ, "MARTLET_PLUGINS": ",".join(PLUGINS)}
    argv = ["infer", "--adapters", str(trained_run), "--input", str(rows), "--max-new-tokens", "3"]
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from martlet.cli import main; sys.exit(main())", *argv],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.split("\n")
    assert lines[-1] == "" and len(lines) == 3, proc.stdout[:2000]
    assert all(json.loads(line)["response"] is not None for line in lines[:2])


def _damage(file, how):
    if how == "deleted":
        file.unlink()
    elif how == "truncated":
        file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
    elif how == "cut in the header":
        file.write_bytes(file.read_bytes()[:100])
    else:  # random bytes
        file.write_bytes(os.urandom(4096))


@pytest.mark.parametrize("how", ["deleted", "truncated", "cut in the header", "random bytes"])
def test_a_damaged_adapter_names_the_file(cli, trained_run, tmp_path, how):
    """Not `LocalEntryNotFoundError ... outgoing traffic has been disabled` (a network problem,
    it suggests) or `SafetensorError: invalid header length`: the file, and what to do."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    _damage(run / "adapter_model.safetensors", how)
    result = cli("infer", "--adapters", str(run), "--query", "Hi", "--max-new-tokens", "2")
    assert result.exit_code != 0
    assert "Traceback" not in result.stderr
    assert str(run / "adapter_model.safetensors") in result.stderr, result.stderr
    assert ("missing" if how == "deleted" else "damaged") in result.stderr
    assert "train again" in result.stderr
    assert "traffic" not in result.stderr and "SafetensorError" not in result.stderr


def test_a_damaged_checkpoint_points_at_the_other_checkpoints(cli, trained_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    for step in (1, 2):
        shutil.copytree(
            trained_run, run / f"checkpoint-{step}", ignore=shutil.ignore_patterns("config.yaml")
        )
    _damage(run / "checkpoint-2" / "adapter_model.safetensors", "truncated")
    result = cli("infer", "--adapters", str(run / "checkpoint-2"), "--query", "Hi")
    assert result.exit_code != 0
    assert "checkpoint-2/adapter_model.safetensors is damaged" in result.stderr
    assert f"--resume-from-checkpoint {run / 'checkpoint-1'}" in result.stderr, result.stderr


def test_a_damaged_adapter_config_is_a_clear_error(cli, trained_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    (run / "adapter_config.json").write_text('{"peft_type": "LO')
    result = cli("infer", "--adapters", str(run), "--query", "Hi")
    assert result.exit_code != 0
    assert "adapter_config.json is damaged" in result.stderr and "not valid JSON" in result.stderr


# ---------------------------------------------------------------------- --output


@pytest.fixture
def rows(tmp_path):
    file = tmp_path / "rows.jsonl"
    file.write_text(json.dumps({"query": "Hi"}) + "\n")
    return file


def _writable(folder):
    import tempfile

    if not os.path.isdir(folder):
        return True  # nothing unwritable to try
    try:
        tempfile.TemporaryFile(dir=folder).close()
    except OSError:
        return False
    return True


def _bad_outputs(tmp_path):
    folder = tmp_path / "answers"
    folder.mkdir()
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    return {
        "a folder": (str(folder), "is a folder"),
        "a parent that is a file": (str(a_file / "answers.jsonl"), "is a file, not a folder"),
        "a parent deeper under a file": (str(a_file / "a" / "b.jsonl"), "is a file, not a folder"),
        "an unwritable place": ("/sys/martlet-answers.jsonl", "cannot write --output"),
    }


@pytest.mark.parametrize(
    "case",
    ["a folder", "a parent that is a file", "a parent deeper under a file", "an unwritable place"],
)
@pytest.mark.parametrize("task", ["generate", "reward"])
def test_a_bad_output_is_reported_before_the_model_loads(cli, rows, tmp_path, case, task):
    """The model named does not exist: the --output error must come first, since loading a
    real model takes a while (`IsADirectoryError` after the load, before)."""
    if case == "an unwritable place" and _writable("/sys"):
        pytest.skip("/sys is writable here")
    output, message = _bad_outputs(tmp_path)[case]
    result = cli(
        "infer",
        "--model",
        str(tmp_path / "no-such-model"),
        "--task",
        task,
        "--input",
        str(rows),
        "--output",
        output,
    )
    assert result.exit_code != 0
    assert message in result.stderr, result.stderr
    assert "--output" in result.stderr and "no-such-model" not in result.stderr
    assert "Traceback" not in result.stderr


def test_a_good_output_is_left_alone_until_the_answers_come(cli, rows, tmp_path, tiny_model_dir):
    existing = tmp_path / "old.jsonl"
    existing.write_text("old\n")
    result = cli(
        "infer", "--model", str(tmp_path / "nope"), "--input", str(rows), "--output", str(existing)
    )
    assert result.exit_code != 0 and "nope" in result.stderr  # the model's error this time
    assert existing.read_text() == "old\n"  # the check wrote nothing
    nested = tmp_path / "new" / "dir" / "answers.jsonl"
    result = cli(
        "infer",
        "--model",
        str(tiny_model_dir),
        "--input",
        str(rows),
        "--output",
        str(nested),
        "--max-new-tokens",
        "2",
    )
    assert result.exit_code == 0, result.stderr
    assert len(nested.read_text().splitlines()) == 1


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--temperature", "-1"], "--temperature must be at least 0, not -1.0"),
        (["--top-p", "0"], "--top-p must be in (0, 1], not 0.0"),
        (["--max-new-tokens", "0"], "--max-new-tokens must be at least 1, not 0"),
        (["--template", "chatmll"], "did you mean 'chatml'"),
    ],
)
def test_bad_values_fail_before_the_model_loads(cli, tmp_path, extra, message):
    result = cli("infer", "--model", str(tmp_path / "no-model"), "--query", "hi", *extra)
    assert result.exit_code != 0 and "Traceback" not in result.stderr
    assert message in result.stderr, result.stderr
    assert "no-model" not in result.stderr  # nothing was loaded


@pytest.mark.parametrize("task", ["generate", "reward"])
def test_a_missing_input_file_fails_before_the_model_loads(cli, tmp_path, task):
    result = cli(
        "infer",
        "--model",
        str(tmp_path / "no-model"),
        "--task",
        task,
        "--input",
        str(tmp_path / "missing.jsonl"),
    )
    assert result.exit_code != 0 and "Traceback" not in result.stderr
    assert "missing.jsonl" in result.stderr and "does not exist" in result.stderr
    assert "no-model" not in result.stderr  # the model was never looked for
