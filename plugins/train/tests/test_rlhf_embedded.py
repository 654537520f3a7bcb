"""DPO on the embedded SmolLM2-135M-Instruct and the embedded preference sample: the held-out
implicit-reward margin and accuracy rise from the start (a real model, a few minutes)."""

from __future__ import annotations

import json

import pytest
from martlet_train.rlhf import rlhf


@pytest.fixture(autouse=True)
def _plugins(martlet_manager, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    martlet_manager("train", "hf", "data", "peft", "accel", "align")


def test_dpo_on_the_embedded_model_raises_the_held_out_margin_and_accuracy(tmp_path):
    out = tmp_path / "dpo"
    result = rlhf(
        {
            "model": "smollm2-135m-instruct",
            "method": "dpo",
            "beta": 0.1,
            "dataset": ["sample-dpo#96"],
            "split_dataset_ratio": 0.25,
            "eval_on_start": True,
            "max_steps": 9,
            "eval_steps": 9,
            "per_device_train_batch_size": 8,
            "per_device_eval_batch_size": 8,
            "learning_rate": 5e-4,
            "lora_rank": 8,
            "lora_alpha": 32,
            "output_dir": str(out),
            "logging_steps": 3,
            "disable_progress_bar": True,
            "seed": 0,
        }
    )
    assert result.global_step == 9
    lines = (out / "metrics.jsonl").read_text().splitlines()
    evals = [m for m in map(json.loads, lines) if "eval_loss" in m]
    first, last = evals[0], evals[-1]
    assert first["step"] == 0 and last["step"] == 9
    assert first["eval_loss"] == pytest.approx(0.6931, abs=2e-3)  # policy == reference
    assert last["eval_rewards/margin"] > first["eval_rewards/margin"] + 0.05
    assert last["eval_rewards/accuracy"] > 0.6  # of 24 held-out pairs
    assert last["eval_loss"] < first["eval_loss"]
