"""Optimizers, gradient checkpointing and the TensorBoard logger, on the tiny model."""

from __future__ import annotations

import json

import pytest
import yaml

PLUGINS = ("train", "hf", "data", "peft", "accel")


@pytest.fixture
def cli(martlet_manager, martlet_cli):
    martlet_manager(*PLUGINS)
    return martlet_cli


def _sft(cli, model_dir, out, *extra):
    return cli(
        "sft",
        "--model",
        str(model_dir),
        "--dataset",
        "sample-sft#8",
        "--max-steps",
        "2",
        "--per-device-train-batch-size",
        "2",
        "--output-dir",
        str(out),
        "--disable-progress-bar",
        "--logging-steps",
        "1",
        *extra,
    )


@pytest.mark.parametrize("optim", ["adamw", "sgd", "adafactor", "adamw_8bit"])
def test_every_optimizer_trains(cli, tiny_model_dir, tmp_path, optim):
    if optim == "adamw_8bit":
        pytest.importorskip("bitsandbytes", reason="AdamW 8-bit needs bitsandbytes")
    result = _sft(
        cli,
        tiny_model_dir,
        tmp_path,
        "--optim",
        optim,
        "--tuner",
        "full",
        "--learning-rate",
        "1e-3",
    )
    assert result.exit_code == 0, result.stderr


def test_gradient_checkpointing_gives_the_same_loss(cli, tiny_model_dir, tmp_path):

    losses = {}
    for flag in ("false", "true"):
        out = tmp_path / flag
        result = _sft(
            cli, tiny_model_dir, out, "--gradient-checkpointing", flag, "--lora-dropout", "0"
        )
        assert result.exit_code == 0, result.stderr
        lines = (out / "metrics.jsonl").read_text().splitlines()
        losses[flag] = [json.loads(x)["loss"] for x in lines]
    assert losses["true"] == pytest.approx(losses["false"], rel=1e-5)


def test_report_to_tensorboard_writes_event_files(cli, tiny_model_dir, tmp_path):
    pytest.importorskip("tensorboard")
    result = _sft(cli, tiny_model_dir, tmp_path, "--report-to", "tensorboard")
    assert result.exit_code == 0, result.stderr
    events = list((tmp_path / "runs").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "runs"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("loss")] == [1, 2]


def test_bad_optimizer_and_batch_sizes(cli, tiny_model_dir, tmp_path):
    bad = _sft(cli, tiny_model_dir, tmp_path, "--optim", "lion")
    assert bad.exit_code != 0 and "adamw" in bad.stderr
    zero = _sft(cli, tiny_model_dir, tmp_path / "z", "--gradient-accumulation-steps", "0")
    assert zero.exit_code != 0 and "at least 1" in zero.stderr


def test_a_callbacks_own_option_reaches_it_only_when_it_is_named(cli, tiny_model_dir, tmp_path):
    """``--logging-dir`` is the tensorboard callback's option (its record declares it): taken
    with ``--report-to tensorboard``, refused without, and written with the run's options."""
    pytest.importorskip("tensorboard")
    logs = tmp_path / "elsewhere"
    result = _sft(
        cli,
        tiny_model_dir,
        tmp_path / "run",
        "--report-to",
        "tensorboard",
        "--logging-dir",
        str(logs),
    )
    assert result.exit_code == 0, result.stderr
    assert list(logs.glob("events.out.tfevents.*"))
    assert not (tmp_path / "run" / "runs").exists()
    config = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert config["report_to"] == ["tensorboard"] and config["logging_dir"] == str(logs)
    refused = _sft(cli, tiny_model_dir, tmp_path / "no", "--logging-dir", str(logs))
    assert refused.exit_code != 0
    assert "--logging-dir is an option of callback tensorboard (martlet-train)" in refused.stderr
    assert "pass --report-to tensorboard" in refused.stderr
