"""The wandb logger registers cleanly and, without the wandb package, fails clearly."""

from __future__ import annotations

import importlib.util

import pytest
from martlet.errors import MissingDependencyError
from martlet_sdk.contracts import CallbackContract

HAS_WANDB = importlib.util.find_spec("wandb") is not None


class TestWandbRecord(CallbackContract):
    @pytest.fixture
    def plugin(self):
        return "wandb"

    @pytest.fixture
    def record_name(self):
        return "wandb"


@pytest.mark.skipif(
    HAS_WANDB, reason="wandb is installed here; the missing-package path needs it absent"
)
def test_without_wandb_the_error_says_what_to_install(martlet_manager):
    manager = martlet_manager("wandb")
    record = manager.registry.get("callbacks", "wandb")
    with pytest.raises(MissingDependencyError, match="pip install 'wandb'"):
        record.load()


@pytest.mark.skipif(HAS_WANDB, reason="wandb is installed here")
def test_sft_with_report_to_wandb_fails_before_loading_anything(
    martlet_manager, martlet_cli, tmp_path
):
    martlet_manager("train", "hf", "data", "peft", "wandb")
    result = martlet_cli(
        "sft",
        "--model",
        str(tmp_path / "not-loaded"),
        "--dataset",
        "sample-sft#2",
        "--report-to",
        "wandb",
        "--output-dir",
        str(tmp_path),
    )
    assert result.exit_code != 0
    assert "pip install 'wandb'" in result.stderr
    assert "not-loaded" not in result.stderr  # it failed before trying the model


def test_its_options_show_under_report_to_wandb_and_need_it(martlet_manager, martlet_cli):
    """`--wandb-project` and friends are the wandb callback's own options: listed by
    `--report-to wandb --help` (even without the wandb package), refused without it."""
    martlet_manager("train", "hf", "data", "peft", "wandb")
    shown = martlet_cli("sft", "--report-to", "wandb", "--help")
    assert shown.exit_code == 0, shown.output
    assert "Weights & Biases: metrics to a W&B run (martlet-wandb):" in shown.stdout
    for flag in ("--wandb-project NAME", "--wandb-entity NAME", "--wandb-run-name NAME"):
        assert flag in shown.stdout
    refused = martlet_cli("sft", "--model", "m", "--wandb-project", "p", "--print-config")
    assert refused.exit_code != 0
    assert "--wandb-project is an option of callback wandb (martlet-wandb)" in refused.stderr
    assert "pass --report-to wandb" in refused.stderr


@pytest.mark.skipif(not HAS_WANDB, reason="needs the wandb package (pip install wandb)")
def test_the_options_reach_an_offline_wandb_run(tmp_path, monkeypatch):
    from martlet_wandb.callback import WandbCallback

    monkeypatch.setenv("WANDB_MODE", "offline")
    callback = WandbCallback(
        output_dir=tmp_path, wandb_project="proj-x", wandb_run_name="named-run"
    )
    callback.on_log(1, {"loss": 1.5, "step": 1})
    assert callback.run.project == "proj-x" and callback.run.name == "named-run"
    callback.on_end()
