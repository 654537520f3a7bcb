"""Nothing lost, nothing misleading: the run directory across overwrite, failure, resume and
signals; damaged checkpoint files; values and outputs checked before anything loads."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

PLUGINS = ("train", "hf", "data", "peft", "accel")


@pytest.fixture
def cli(martlet_manager, martlet_cli):
    martlet_manager(*PLUGINS)
    return martlet_cli


def sft_args(model: Path | str, out: Path, *extra: str) -> list[str]:
    return [
        "sft",
        "--model",
        str(model),
        "--output-dir",
        str(out),
        "--dataset",
        "sample-sft#8",
        "--disable-progress-bar",
        "--logging-steps",
        "1",
        "--seed",
        "0",
        *extra,
    ]


def metric_steps(out: Path) -> list[int]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["step"] for line in lines if '"loss"' in line]


# ---------------------------------------------------------------- overwrite, retry, resume


def test_overwrite_starts_afresh_and_auto_never_resumes_the_old_run(cli, tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    first = cli(*sft_args(tiny_model_dir, out, "--max-steps", "3", "--save-steps", "1"))
    assert first.exit_code == 0, first.stderr
    assert (out / "checkpoint-2").is_dir()

    second = cli(*sft_args(tiny_model_dir, out, "--max-steps", "1", "--overwrite-output-dir"))
    assert second.exit_code == 0, second.stderr
    assert "was moved to" in second.stdout and ".replaced-run" in second.stdout
    assert not list(out.glob("checkpoint-*")) and not (out / ".replaced-run").exists()
    assert metric_steps(out) == [1]  # the old run's metrics went with it

    again = cli(
        *sft_args(tiny_model_dir, out, "--max-steps", "1", "--resume-from-checkpoint", "auto")
    )
    assert again.exit_code == 0, again.stderr
    assert "nothing to resume" in again.stdout and "resumed from" not in again.stdout
    assert metric_steps(out) == [1]


def test_an_overwrite_that_fails_before_saving_keeps_the_old_run(cli, tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    assert cli(*sft_args(tiny_model_dir, out, "--max-steps", "1")).exit_code == 0
    broken = cli(*sft_args(tmp_path / "no-model", out, "--overwrite-output-dir"))
    assert broken.exit_code != 0 and "Traceback" not in broken.stderr
    kept = out / ".replaced-run"
    assert (kept / "adapter_model.safetensors").is_file() and (
        kept / "trainer_state.json"
    ).is_file()


def test_a_run_that_never_saved_a_step_does_not_block_its_retry(cli, tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    failed = cli(*sft_args(tmp_path / "no-model", out))
    assert failed.exit_code != 0
    assert (out / "config.yaml").is_file()  # it started, then failed: nothing saved
    retry = cli(*sft_args(tiny_model_dir, out, "--max-steps", "1"))
    assert retry.exit_code == 0, retry.stderr
    assert "never saved a step" in retry.stdout
    assert yaml.safe_load((out / "config.yaml").read_text())["model"] == str(tiny_model_dir)


def test_a_foreign_metrics_file_is_replaced_and_the_adapter_saved(cli, tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text("this is not JSON\n{also not}\n")
    result = cli(*sft_args(tiny_model_dir, out, "--max-steps", "2"))
    assert result.exit_code == 0, result.stderr
    assert "replaced metrics.jsonl" in result.stdout
    assert (out / "adapter_model.safetensors").is_file()
    assert metric_steps(out) == [1, 2]


def test_unreadable_metric_lines_cost_a_warning_never_the_weights(cli, tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    first = cli(*sft_args(tiny_model_dir, out, "--max-steps", "2", "--save-steps", "1"))
    assert first.exit_code == 0, first.stderr
    (out / "adapter_model.safetensors").unlink()
    with open(out / "metrics.jsonl", "a") as f:
        f.write("\x00\x01 garbage\n")
    resumed = cli(
        *sft_args(tiny_model_dir, out, "--max-steps", "3", "--resume-from-checkpoint", "auto")
    )
    assert resumed.exit_code == 0, resumed.stderr
    assert "unreadable line" in resumed.stdout
    assert (out / "adapter_model.safetensors").is_file()
    # resumed from checkpoint-1: the steps logged after it are logged once, not twice
    assert metric_steps(out) == [1, 2, 3]


def test_resuming_a_finished_run_says_so_and_trains_nothing(cli, tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    args = sft_args(tiny_model_dir, out, "--max-steps", "2", "--save-steps", "1")
    assert cli(*args).exit_code == 0
    before = (out / "metrics.jsonl").read_text()
    again = cli(*args, "--resume-from-checkpoint", "auto")
    assert again.exit_code == 0, again.stderr
    assert "is complete (2 of 2 steps trained): nothing to resume" in again.stdout
    assert (out / "metrics.jsonl").read_text() == before


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("trainer_state/optimizer.pt", "optimizer.pt is damaged"),
        ("trainer_state/state.json", "state.json is damaged"),
        ("adapter_model.safetensors", "its trained weights cannot be read"),
        ("-trainer_state/rng_state.pt", "rng_state.pt is missing"),
    ],
)
def test_a_damaged_checkpoint_is_named_with_what_to_do(
    cli, tiny_model_dir, tmp_path, damage, message
):
    out = tmp_path / "run"
    args = sft_args(tiny_model_dir, out, "--max-steps", "3", "--save-steps", "1")
    assert cli(*args).exit_code == 0
    newest = out / "checkpoint-2"
    if damage.startswith("-"):
        (newest / damage[1:]).unlink()
    else:
        file = newest / damage
        data = file.read_bytes()
        file.write_bytes(data[: len(data) // 3] + os.urandom(64))
    result = cli(
        *sft_args(tiny_model_dir, out, "--max-steps", "4", "--resume-from-checkpoint", "auto")
    )
    assert result.exit_code != 0
    assert "Traceback" not in result.stderr
    assert f"cannot resume from {newest}" in result.stderr and message in result.stderr
    assert f"--resume-from-checkpoint {out / 'checkpoint-1'}" in result.stderr


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_prints_the_resume_command(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    martlet = Path(sys.executable).parent / "martlet"
    cmd = [
        str(martlet),
        *sft_args(tiny_model_dir, out, "--max-steps", "400", "--save-steps", "1000"),
    ]
    cmd[cmd.index("sample-sft#8")] = "sample-sft#64"
    env = {**os.environ, "MARTLET_PLUGINS": ",".join(PLUGINS)}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    metrics = out / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= 2:
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "SIGTERM" in stdout and "checkpoint saved" in stdout
    assert len(list(out.glob("checkpoint-*"))) == 1
    assert (
        "--resume-from-checkpoint auto" in stdout
        and f"martlet sft --model {tiny_model_dir}" in stdout
    )


# ---------------------------------------------------------------- checked before loading


@pytest.mark.skipif(
    __import__("torch").cuda.is_available(), reason="this machine has a CUDA device"
)
def test_a_missing_device_is_an_error_without_fallback(cli, tiny_model_dir, tmp_path):
    result = cli(
        *sft_args(
            tmp_path / "no-model", tmp_path / "o", "--device", "cuda", "--fallback-on-cpu", "false"
        )
    )
    assert result.exit_code != 0 and "Traceback" not in result.stderr
    assert "--device cuda cannot be used" in result.stderr
    assert "no-model" not in result.stderr  # failed before the model was looked for


def test_an_unknown_device_falls_back_with_a_warning_and_the_record_says_cpu(
    cli, tiny_model_dir, tmp_path
):
    out = tmp_path / "run"
    result = cli(*sft_args(tiny_model_dir, out, "--max-steps", "1", "--device", "tpu9"))
    assert result.exit_code == 0, result.stderr
    assert "no accelerator named 'tpu9' is installed" in result.stdout
    assert "running on the CPU" in result.stdout
    assert yaml.safe_load((out / "config.yaml").read_text())["device"] == "cpu"


def _unwritable(tmp_path: Path) -> Path:
    return Path("/proc/martlet-cannot-write-here/run")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: (p / "file").write_text("x") and p / "file", "is a file, not a directory"),
        (lambda p: (p / "file").write_text("x") and p / "file" / "run", "is a file"),
        (_unwritable, "is not writable"),
    ],
)
def test_an_output_dir_that_cannot_be_written_fails_before_loading(cli, tmp_path, make, message):
    out = make(tmp_path)
    result = cli(*sft_args(tmp_path / "no-model", out))
    assert result.exit_code != 0 and "Traceback" not in result.stderr
    assert message in result.stderr
    assert "no-model" not in result.stderr


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--learning-rate", "-1"], "--learning-rate must be a number of at least 0, not -1.0"),
        (["--num-train-epochs", "0"], "--num-train-epochs must be more than 0"),
        (["--num-train-epochs", "-1"], "--num-train-epochs must be more than 0"),
        (
            ["--per-device-train-batch-size", "0"],
            "--per-device-train-batch-size must be at least 1",
        ),
        (["--warmup-ratio", "1.5"], "--warmup-ratio must be between 0 and 1"),
        (["--lora-rank", "0"], "--lora-rank must be at least 1, not 0"),
        (["--template", "chatmll"], "did you mean 'chatml'"),
        (["--lora-alpha", "0"], "--lora-alpha must be more than 0, not 0"),
        (["--neftune-noise-alpha", "-1"], "--neftune-noise-alpha must be more than 0"),
        (["--max-activation-memory", "-5GB"], "--max-activation-memory must be a positive size"),
        (["--resume-from-checkpoint", "/nonexistent/ckpt"], "is not a Martlet checkpoint"),
        (["--half-precision-backend", "apex"], "--half-precision-backend apex is not available"),
        # ms-swift's --quant-method-load is --quant-method, checked before the model loads (here
        # the quantizer plugins are not in use: the error says which plugin to enable)
        (["--quant-method-load", "hqq"], "quantizer 'hqq'"),
        (["--quantization-bit", "4"], "quantizer 'bnb'"),
        (["--lora-dropout", "2"], "--lora-dropout must be in [0, 1), not 2.0"),
        (
            ["--tuner", "full", "--use-dora", "--lora-rank", "64"],
            "--use-dora is an option of tuner lora (martlet-peft), not of tuner 'full'",
        ),
    ],
)
def test_bad_values_fail_before_the_model_loads(cli, tmp_path, extra, message):
    result = cli(*sft_args(tmp_path / "no-model", tmp_path / "o", *extra))
    assert result.exit_code != 0 and "Traceback" not in result.stderr
    assert message in result.stderr, result.stderr
    assert "check --target-modules" not in result.stderr
    assert "no-model" not in result.stderr  # nothing was loaded
    assert not (tmp_path / "o").exists()  # and nothing was written


def test_a_bad_distillation_temperature_fails_before_the_models_load(
    martlet_manager, martlet_cli, tmp_path
):
    martlet_manager(*PLUGINS, "align")
    result = martlet_cli(
        "rlhf",
        "--method",
        "gkd",
        "--model",
        str(tmp_path / "no-model"),
        "--teacher-model",
        str(tmp_path / "no-teacher"),
        "--dataset",
        "sample-sft#4",
        "--output-dir",
        str(tmp_path / "o"),
        "--temperature",
        "0",
    )
    assert result.exit_code != 0 and "Traceback" not in result.stderr
    assert "--temperature must be more than 0, not 0.0" in result.stderr
    assert "no-model" not in result.stderr and "no-teacher" not in result.stderr


def test_print_config_refuses_what_the_run_would_refuse(cli, tmp_path):
    bad = cli(
        *sft_args(tmp_path / "m", tmp_path / "o", "--per-device-train-batch-size", "0"),
        "--print-config",
    )
    assert bad.exit_code != 0 and "--per-device-train-batch-size must be at least 1" in bad.stderr
    assert "per_device_train_batch_size: 0" not in bad.stdout
    good = cli(
        *sft_args(tmp_path / "m", tmp_path / "o", "--per-device-train-batch-size", "2"),
        "--print-config",
    )
    assert good.exit_code == 0, good.stderr
    assert "per_device_train_batch_size: 2" in good.stdout


def test_a_negative_beta_fails_before_the_models_load(martlet_manager, martlet_cli, tmp_path):
    martlet_manager(*PLUGINS, "align")
    result = martlet_cli(
        "rlhf",
        "--method",
        "dpo",
        "--model",
        str(tmp_path / "no-model"),
        "--dataset",
        "sample-dpo#4",
        "--output-dir",
        str(tmp_path / "o"),
        "--beta",
        "-1",
    )
    assert result.exit_code != 0 and "Traceback" not in result.stderr
    assert "--beta must be more than 0, not -1.0" in result.stderr
    assert "no-model" not in result.stderr


def test_only_rank_0_prepares_the_run_directory(tmp_path, monkeypatch):
    """In a multi-process run every process calls prepare; only rank 0 may move or replace
    anything (two processes moving the same run aside would race)."""
    from types import SimpleNamespace

    from martlet_train import rundir

    out = tmp_path / "run"
    (out / "checkpoint-1" / "trainer_state").mkdir(parents=True)
    (out / "metrics.jsonl").write_text('{"step": 1, "loss": 1.0}\n')
    config = SimpleNamespace(
        output_dir=str(out), resume_from_checkpoint=None, overwrite_output_dir=True
    )
    monkeypatch.setenv("RANK", "1")
    assert rundir.prepare(config, say=lambda _: None) == out
    assert (out / "checkpoint-1").is_dir() and not (out / ".replaced-run").exists()
    monkeypatch.setenv("RANK", "0")
    rundir.prepare(config, say=lambda _: None)
    assert (out / ".replaced-run" / "checkpoint-1").is_dir() and not (out / "checkpoint-1").exists()
