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
