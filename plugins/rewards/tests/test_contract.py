"""Every built-in reward against the SDK's reward contract, as a third party's would be."""

from __future__ import annotations

import pytest
from martlet_sdk.contracts import RewardContract

NAMES = ["accuracy", "cosine", "format", "http", "repetition", "reward_model", "soft_overlong"]


class TestBuiltinRewards(RewardContract):
    @pytest.fixture
    def plugin(self):
        return "rewards"

    @pytest.fixture(params=NAMES)
    def record_name(self, request):
        return request.param

    @pytest.fixture
    def reward_options(self, record_name, request):
        # the two options a user must give: a reward model's run, a server's URL
        if record_name == "reward_model":
            return {"reward_model": str(request.getfixturevalue("rm_run"))}
        if record_name == "http":
            return {"reward_url": request.getfixturevalue("reward_server").url}
        return {}

    @pytest.fixture
    def reward_plugins(self, record_name):
        # a reward model loads through the model loaders and tuners of other plugins
        return ("hf", "peft", "accel") if record_name == "reward_model" else ()


def test_the_plugin_registers_the_builtins(martlet_manager):
    manager = martlet_manager("rewards")
    records = {r.name: r for r in manager.registry.records("rewards")}
    assert sorted(records) == NAMES
    assert records["accuracy"].columns == ("solution|answer",)
    assert manager.registry.get("rewards", "soft-overlong") is records["soft_overlong"]
    assert manager.registry.get("rewards", "rm") is records["reward_model"]
    assert records["reward_model"].requires == ("torch", "transformers")
