"""The loss records: fields, the SDK's loss contract, and no torch at registration."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

import pytest
from martlet.config import option
from martlet_sdk.contracts import LossContract

EXPECTED = {
    # name: (impl, data, reference, inputs, aliases)
    "dpo": ("martlet_align.preference:dpo", "preference", True, "logps", ()),
    "simpo": ("martlet_align.preference:simpo", "preference", False, "logps", ()),
    "cpo": ("martlet_align.preference:cpo", "preference", False, "logps", ()),
    "orpo": ("martlet_align.preference:orpo", "preference", False, "logps", ()),
    "kto": ("martlet_align.kto:kto", "kto", True, "logps", ()),
    "rm": ("martlet_align.reward:bradley_terry", "preference", False, "rewards",
           ("reward-model", "reward")),
    "gkd": ("martlet_align.distill:gkd", "messages", False, "logits", ()),
    "grpo": ("martlet_align.online:Grpo", "prompts", True, "rollouts", ()),
    "rloo": ("martlet_align.online:Rloo", "prompts", True, "rollouts", ()),
    "reinforce_pp": ("martlet_align.online:ReinforcePP", "prompts", True, "rollouts",
                     ("reinforce++", "reinforce_plus_plus")),
    "ppo": ("martlet_align.online:Ppo", "prompts", True, "rollouts", ()),
}  # fmt: skip


class TestAlignLosses(LossContract):
    @pytest.fixture
    def plugin(self):
        return "align"

    @pytest.fixture(params=sorted(EXPECTED))
    def record_name(self, request):
        return request.param


def test_records_say_how_their_losses_are_called(martlet_manager):
    manager = martlet_manager("align")
    align = {r.name: r for r in manager.registry.records("losses")}
    assert set(align) == set(EXPECTED)
    for name, (impl, data, reference, inputs, aliases) in EXPECTED.items():
        record = align[name]
        got = (record.impl, record.data, record.reference, record.inputs, tuple(record.aliases))
        assert got == (impl, data, reference, inputs, aliases), name


def test_the_package_imports_without_torch():
    code = (
        "import sys, martlet_align, martlet_align.plugin, martlet_align.output, "
        "martlet_align.options; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@dataclass(kw_only=True)
class Command:
    """A command shaped like `martlet rlhf`: a loss selector and its own
    max_completion_length"""

    method: str = option(
        "dpo",
        help="The objective.",
        names_of="losses",
        where={"inputs": ("logps", "rewards", "logits", "rollouts")},
    )
    max_completion_length: int = option(128, help="The command's own.")


def test_online_options_compose_only_with_their_loss(martlet_manager):
    from martlet import compose
    from martlet.config import build
    from martlet.errors import ConfigError
    from martlet.registry import get

    martlet_manager("align")
    grpo = build(Command, values={"method": "grpo", "beta": 0.0, "epsilon_high": 0.28})
    record = get("losses", "grpo")
    options = compose.option_values(grpo, record)
    assert options["beta"] == 0.0 and options["epsilon_high"] == 0.28
    assert options["max_completion_length"] == 128  # the command's declaration wins
    algo = record.load()(**options)
    assert not algo.uses_reference and algo.group_size == 8
    # DPO keeps its own beta, loss_type and checks
    dpo = build(Command, values={"method": "dpo"})
    assert dpo.beta == 0.1 and dpo.loss_type == ["sigmoid"]
    with pytest.raises(ConfigError, match="--beta must be more than 0"):
        build(Command, values={"method": "dpo", "beta": 0.0})
    with pytest.raises(ConfigError, match="not of loss 'dpo'"):
        build(Command, values={"method": "dpo", "epsilon_high": 0.28})
    # ms-swift/TRL spellings
    ppo = build(Command, values={"method": "ppo", "cliprange": 0.3, "num_ppo_epochs": 2})
    assert (ppo.epsilon, ppo.num_iterations) == (0.3, 2)
    assert build(Command, values={"method": "reinforce++"}).advantage_estimator == (
        "reinforce_baseline"
    )
    with pytest.raises(ConfigError, match="--num-generations must be at least 2"):
        build(Command, values={"method": "rloo", "num_generations": 1})
    titles = [
        title for title, _ in compose.groups(compose.composed_for(Command, {"method": "grpo"}))
    ]
    assert titles[1:] == [
        "Online RL: sampling the completions and the clipped policy update (martlet-align)",
        "GRPO: group relative policy optimization (with the DAPO, Dr GRPO and GSPO variants) "
        "(martlet-align)",
    ]
