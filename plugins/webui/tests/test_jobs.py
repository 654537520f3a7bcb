"""A job is the command line run as a process of its own: its output followed, a failure
reported with its last lines, Stop ending a training run as a run directory other commands
read; a run's metrics.jsonl read for the loss plot as it grows."""

from __future__ import annotations

import json
import time

from martlet_webui.jobs import Job, loss_points, progress_of, read_metrics


def test_a_job_runs_the_command_and_keeps_its_output(tmp_path):
    job = Job(["martlet", "version"], cwd=tmp_path)
    assert job.wait(timeout=120) == 0
    assert job.finished() and job.status() == "finished"
    assert "martlet" in job.log().lower()
    assert job.failure() is None


def test_a_failed_command_is_an_error_with_its_last_lines(tmp_path):
    job = Job(["martlet", "sft", "--model", "m", "--dataset", "d", "--tuner", "nope"], cwd=tmp_path)
    assert job.wait(timeout=120) != 0
    error = job.failure()
    assert error is not None
    assert error.what.startswith("`martlet sft --model m --dataset d --tuner nope` failed")
    assert "unknown tuner 'nope'" in error.why  # the command's own message, from its output
    assert error.fix


def test_stop_ends_a_training_run_as_a_run_directory(tmp_path, tiny_model_dir):
    """SIGTERM to the process group: the trainer finishes the step, saves and ends; the
    folder is a run directory `martlet infer` or `export` can read."""
    from martlet.rundirs import check_folder
    from martlet.runs import read_run

    argv = ["martlet", "sft", "--model", str(tiny_model_dir), "--dataset", "sample-sft#64",
            "--max-steps", "500", "--logging-steps", "1", "--output-dir", "run"]  # fmt: skip
    job = Job(argv, cwd=tmp_path)
    deadline = time.monotonic() + 120
    while not read_metrics(tmp_path / "run") and time.monotonic() < deadline:
        assert job.running, job.log()
        time.sleep(0.2)
    job.stop()
    assert "stopping" in job.status()
    job.wait(timeout=120)
    assert job.status().startswith("stopped")
    assert job.failure() is None  # stopped from the UI: no error
    run = read_run(tmp_path / "run")
    check_folder(run.path, run.tuner)  # the trained result is there, whole
    assert "checkpoint saved" in job.log()


def test_metrics_become_plot_points(tmp_path):
    lines = [
        {"loss": 2.5, "step": 1, "learning_rate": 1e-4},
        {"loss": 2.0, "step": 2},
        {"eval_loss": 2.2, "step": 2},
    ]
    text = "".join(json.dumps(row) + "\n" for row in lines) + '{"loss": 1.'  # being written
    (tmp_path / "metrics.jsonl").write_text(text)
    rows = read_metrics(tmp_path)
    assert rows == lines
    assert loss_points(rows) == [
        {"step": 1, "loss": 2.5, "series": "train"},
        {"step": 2, "loss": 2.0, "series": "train"},
        {"step": 2, "loss": 2.2, "series": "eval"},
    ]
    assert read_metrics(tmp_path / "missing") == []


def test_progress_is_the_newest_bar():
    lines = [
        "Loading weights: 100%|##########| 21/21 [00:00<00:00]",
        "train:  50%|#####     | 3/6 [00:01<00:01,  2.10step/s, loss=6.2]",
        "loss=6.2 step=3",
    ]
    assert progress_of(lines) == (3, 6)
    assert progress_of(["nothing here"]) is None
