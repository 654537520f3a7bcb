"""The reward_model reward with a reward model trained for real (`martlet rlhf --method rm` on
the tiny model): the scores `martlet infer --task reward` gives the same conversations, and
clear errors for a run that is not a reward model."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml
from martlet.errors import ConfigError, MartletError
from martlet_sdk.testing import run_cli

pytest.importorskip("torch")


@pytest.fixture
def models(martlet_manager):
    """The plugins a reward model loads through: model loaders, tuners, templates."""
    return martlet_manager("rewards", "hf", "peft", "accel")


def test_scores_are_those_of_martlet_infer_task_reward(models, rm_run, tmp_path):
    from martlet_rewards.model import RewardModel

    reward = RewardModel(reward_model=str(rm_run), reward_model_batch_size=2)
    prompts = [
        [{"role": "user", "content": "What is the capital of France?"}],
        "What is two plus two?",  # a plain-text prompt is one user message
        [{"role": "user", "content": "What is the capital of France?"}],
    ]
    completions = ["Paris.", "Four.", [{"role": "assistant", "content": "Lyon, I think."}]]
    got = reward(prompts=prompts, completions=completions, completion_ids=[[1]] * 3)
    assert len(got) == 3 and all(isinstance(s, float) for s in got)
    assert got[0] != got[2]  # another answer, another score
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        "".join(
            json.dumps({"query": q, "response": r}) + "\n"
            for q, r in [
                ("What is the capital of France?", "Paris."),
                ("What is two plus two?", "Four."),
                ("What is the capital of France?", "Lyon, I think."),
            ]
        )
    )
    out = tmp_path / "scored.jsonl"
    result = run_cli(
        "infer", "--adapters", str(rm_run), "--task", "reward", "--input", str(rows),
        "--output", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    scored = [json.loads(line)["reward"] for line in out.read_text().splitlines()]
    assert scored == pytest.approx(got, abs=1e-5)


def test_batches_do_not_change_the_scores(models, rm_run):
    from martlet_rewards.model import RewardModel

    prompts = ["a question", "another, longer question to pad the batch", "q"]
    completions = ["one", "", "three words here"]
    one = RewardModel(reward_model=str(rm_run), reward_model_batch_size=1)
    three = RewardModel(reward_model=str(rm_run), reward_model_batch_size=3)
    assert one(prompts=prompts, completions=completions) == pytest.approx(
        three(prompts=prompts, completions=completions), abs=1e-5
    )


def test_what_is_not_a_reward_model_is_refused(models, rm_run, tmp_path):
    from martlet_rewards.model import RewardModel

    with pytest.raises(ConfigError, match="needs --reward-model RUN_DIR"):
        RewardModel()
    with pytest.raises(MartletError, match="not found"):
        RewardModel(reward_model=str(tmp_path / "nowhere"))
    lm = tmp_path / "lm-run"
    shutil.copytree(rm_run, lm)
    config = yaml.safe_load((lm / "config.yaml").read_text())
    config.pop("task_type", None)
    (lm / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match="trained a language model, not a reward model") as err:
        RewardModel(reward_model=str(lm))
    assert "martlet rlhf --method rm" in err.value.fix
