"""martlet-data's records against the SDK contracts, through the installed entry point."""

from __future__ import annotations

import pytest
from martlet_sdk.contracts import CommandContract, DatasetContract, DatasetSourceContract


class TestDatasetSources(DatasetSourceContract):
    @pytest.fixture
    def plugin(self):
        return "data"

    @pytest.fixture(params=["local", "hf", "modelscope", "named"])
    def record_name(self, request):
        return request.param


class TestDatasets(DatasetContract):
    @pytest.fixture
    def plugin(self):
        return "data"

    @pytest.fixture(
        params=[
            "self-cognition",
            "sample-sft",
            "sample-dpo",
            "sample-kto",
            "sample-mcq",
            "sample-pt",
            "ceval",
            "mmlu",
            "gsm8k",
            "hh-rlhf",
            "alpaca-gpt4-en",
        ]
    )
    def record_name(self, request):
        return request.param


class TestDatasetCommand(CommandContract):
    @pytest.fixture
    def plugin(self):
        return "data"

    @pytest.fixture
    def record_name(self):
        return "dataset"
