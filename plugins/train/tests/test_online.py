"""Online RL in `martlet rlhf` (--method grpo|rloo|reinforce_pp) on the tiny model: a reward the
model can learn rises from chance to near 1, equal rewards train nothing, the engine that
samples sees every update (adapter included) without a reload, num_iterations reuses each
generation batch, a resumed run continues exactly, and mistakes are clear errors before
anything loads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from martlet_sdk.testing import logged, run_cli

#: a local plugin with three rewards: the share of a completion's tokens whose id is below 128
#: (a quarter of the tiny tokenizer's 512: chance is about 0.25), a constant, and one that
#: fails (raises; NaN where the rows have a true `nan` column)
REWARDS = """
from martlet import hookimpl
from martlet.records import RewardRecord


class LowIds:
    def __init__(self, **options):
        pass

    def __call__(self, prompts, completions, completion_ids, **columns):
        return [sum(t < 128 for t in ids) / len(ids) if ids else 0.0 for ids in completion_ids]


class Constant:
    def __init__(self, **options):
        pass

    def __call__(self, prompts, completions, **columns):
        return [1.0] * len(completions)


class Broken:
    def __init__(self, **options):
        pass

    def __call__(self, prompts, completions, **columns):
        if columns.get("nan"):
            return [float("nan")] * len(completions)
        raise KeyError("score")


@hookimpl
def martlet_rewards():
    yield RewardRecord(name="low_ids", impl=__name__ + ":LowIds", summary="ids below 128")
    yield RewardRecord(name="constant", impl=__name__ + ":Constant", summary="always 1")
    yield RewardRecord(name="broken", impl=__name__ + ":Broken", summary="fails")
"""

GRPO = (
    "--method", "grpo", "--dataset", "sample-sft#16", "--num-generations", "4",
    "--per-device-train-batch-size", "8", "--max-completion-length", "6", "--beta", "0",
    "--logging-steps", "1", "--seed", "3", "--lr-scheduler-type", "constant",
    "--disable-progress-bar",
)  # fmt: skip


@pytest.fixture(scope="module")
def plugin(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("rewards") / "toy_rewards.py"
    path.write_text(REWARDS)
    return str(path)


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path) -> str:
    return str(tiny_model_dir)


def rlhf(plugin: str, tiny: str, out: Path, *args: str, **kw):
    return run_cli("--plugin", plugin, "rlhf", "--model", tiny, *GRPO, *args,
                   "--output-dir", str(out), **kw)  # fmt: skip


def metrics(run: Path) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [m for m in map(json.loads, lines) if "loss" in m]


def test_a_learnable_reward_rises_from_chance_to_near_one(plugin, tiny, tmp_path):
    run = tmp_path / "run"
    result = rlhf(
        plugin, tiny, run, "--reward-funcs", "low_ids", "--tuner", "full",
        "--learning-rate", "3e-2", "--max-steps", "20", "--log-completions-every", "4",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    logs = metrics(run)
    rewards = [m["reward"] for m in logs]
    assert len(rewards) == 20
    assert sum(rewards[:3]) / 3 < 0.5  # chance: about a quarter of the ids
    assert sum(rewards[-3:]) / 3 > 0.9, rewards
    first = logs[0]
    for name in ("rewards/low_ids/mean", "rewards/low_ids/std", "reward_std", "grad_norm",
                 "completions/mean_length", "entropy", "clip_ratio/region_mean"):  # fmt: skip
        assert name in first, sorted(first)
    samples = [json.loads(line) for line in (run / "completions.jsonl").read_text().splitlines()]
    assert {s["generation"] for s in samples} == {1, 5, 9, 13, 17}
    assert all(len(samples_of) == 4 for samples_of in _by_generation(samples).values())
    assert set(samples[0]) >= {"prompt", "completion", "reward", "rewards"}
    assert (run / "model.safetensors").exists()


def _by_generation(samples: list[dict]) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = {}
    for s in samples:
        out.setdefault(s["generation"], []).append(s)
    return out


def test_equal_rewards_give_zero_advantages_and_change_nothing(plugin, tiny, tmp_path):
    run = tmp_path / "run"
    result = rlhf(
        plugin, tiny, run, "--reward-funcs", "constant", "--tuner", "full",
        "--learning-rate", "1e-2", "--max-steps", "2",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for m in metrics(run):
        assert m["loss"] == 0.0 and m["reward"] == 1.0 and m["reward_std"] == 0.0
        assert m["grad_norm"] == 0.0
    from safetensors.torch import load_file

    trained = load_file(str(run / "model.safetensors"))
    before = load_file(str(Path(tiny) / "model.safetensors"))
    for name, tensor in before.items():
        assert name not in trained or (trained[name] == tensor).all(), name


def test_num_iterations_trains_each_generation_batch_that_many_times(plugin, tiny, tmp_path):
    run = tmp_path / "run"
    result = rlhf(
        plugin, tiny, run, "--reward-funcs", "low_ids", "--num-iterations", "2",
        "--learning-rate", "1e-3", "--max-steps", "4", "--log-completions-every", "1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    samples = [json.loads(line) for line in (run / "completions.jsonl").read_text().splitlines()]
    assert sorted(_by_generation(samples)) == [1, 2]  # 4 steps, 2 generation batches
    logs = metrics(run)
    # a reused batch is scored once: steps 1-2 and 3-4 report the same rewards
    assert logs[0]["reward"] == logs[1]["reward"] and logs[2]["reward"] == logs[3]["reward"]
    # the second pass is off-policy: its ratio is no longer 1, the first's is
    assert logs[0]["clip_ratio/region_mean"] == 0.0


def test_a_resumed_run_continues_exactly(plugin, tiny, tmp_path):
    args = ("--reward-funcs", "low_ids", "--learning-rate", "3e-3", "--max-steps", "4",
            "--save-steps", "2", "--lora-dropout", "0")  # fmt: skip
    whole = tmp_path / "whole"
    assert rlhf(plugin, tiny, whole, *args).returncode == 0
    part = tmp_path / "part"
    shutil.copytree(whole, part)
    for path in part.iterdir():  # keep only the checkpoint at step 2
        if path.name != "checkpoint-2":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    resumed = rlhf(plugin, tiny, part, *args, "--resume-from-checkpoint", "auto")
    assert resumed.returncode == 0, resumed.stderr
    assert logged(part) == pytest.approx(logged(whole)[4:], rel=1e-5)
    assert [m["reward"] for m in metrics(part)] == [m["reward"] for m in metrics(whole)][2:]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "--method grpo needs reward functions"),
        (("--reward-funcs", "low_ids", "--per-device-train-batch-size", "6"),
         "does not hold whole groups of --num-generations 4"),
        (("--reward-funcs", "nope"), "nope"),
        (("--reward-funcs", "low_ids", "--max-length", "6"), "--max-length 6 leaves no room"),
        (("--reward-funcs", "low_ids", "--epsilon", "-1"), "epsilon"),
    ],
)  # fmt: skip
def test_mistakes_are_clear_errors_before_anything_loads(plugin, tiny, tmp_path, args, message):
    out = tmp_path / "run"
    result = rlhf(plugin, tiny, out, *args)
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert not (out / "config.yaml").exists()


def test_reward_funcs_with_an_offline_method_is_refused(plugin, tiny, tmp_path):
    result = run_cli(
        "--plugin", plugin, "rlhf", "--method", "dpo", "--model", tiny, "--dataset",
        "sample-dpo#4", "--reward-funcs", "low_ids", "--output-dir", str(tmp_path / "run"),
    )  # fmt: skip
    assert result.returncode != 0
    assert "--reward-funcs: --method dpo does not sample completions" in result.stderr


def test_the_sampling_engine_sees_each_update_of_the_live_model(martlet_manager):
    import torch
    from martlet_peft.options import TunerOptions
    from martlet_peft.peft_methods import LoraTuner
    from martlet_sdk.tiny import tiny_model, tiny_tokenizer
    from martlet_train.online import RolloutObjective

    martlet_manager("engine-pt", "accel", "hf")

    class Algo:
        group_size, iterations = 1, 1

    tokenizer = tiny_tokenizer()
    model = LoraTuner().prepare(tiny_model(seed=0), TunerOptions(lora_dropout=0.0))
    model.train()
    objective = RolloutObjective(Algo(), None, tokenizer=tokenizer, completions_per_micro_batch=1)
    prompts = [tokenizer("The capital of France is")["input_ids"]]
    greedy = {"max_new_tokens": 5, "temperature": 0.0}
    before = objective._generate(model, prompts, **greedy)
    assert model.training  # generation left the model as the loop had it
    with torch.no_grad():  # an update of the adapter alone (its B starts at zero)
        changed = 0
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 1.0)
                changed += 1
        assert changed
    after = objective._generate(model, prompts, **greedy)
    assert before != after


def test_the_builtin_rewards_read_the_prompt_rows_columns(tiny, tmp_path):
    # sample-rl: prompts without an answer turn and a `solution` column that accuracy reads
    run = tmp_path / "run"
    result = run_cli(
        "rlhf", "--method", "grpo", "--model", tiny, "--dataset", "sample-rl#8",
        "--reward-funcs", "accuracy", "format", "--reward-weights", "1", "0.5",
        "--num-generations", "2", "--per-device-train-batch-size", "4",
        "--max-completion-length", "4", "--max-steps", "2", "--logging-steps", "1",
        "--val-dataset", "sample-rl#2", "--eval-steps", "2", "--disable-progress-bar",
        "--output-dir", str(run),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    logs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    first = logs[0]
    assert first["rewards/accuracy/mean"] == 0.0 and first["rewards/format/mean"] == 0.0
    evaluated = [m for m in logs if "eval_reward" in m]
    assert evaluated and evaluated[-1]["eval_reward"] == 0.0
    assert evaluated[-1]["eval_loss"] == 0.0  # minus the mean reward
    import yaml

    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["reward_funcs"] == ["accuracy", "format"]


def test_a_prompt_dataset_cannot_train_an_offline_method(tiny, tmp_path):
    result = run_cli(
        "rlhf", "--method", "dpo", "--model", tiny, "--dataset", "sample-rl#4",
        "--output-dir", str(tmp_path / "run"),
    )  # fmt: skip
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "sample_rl.jsonl, line" in result.stderr, result.stderr


def test_two_processes_each_sample_their_prompts_and_train_one_model(plugin, tiny, tmp_path):
    run = tmp_path / "run"
    result = rlhf(
        plugin, tiny, run, "--reward-funcs", "low_ids", "--nproc-per-node", "2",
        "--per-device-train-batch-size", "4", "--learning-rate", "1e-3", "--max-steps", "2",
        "--log-completions-every", "1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    logs = metrics(run)
    assert [m["step"] for m in logs] == [1, 2]
    assert all(0.0 <= m["reward"] <= 1.0 for m in logs)
    samples = [json.loads(line) for line in (run / "completions.jsonl").read_text().splitlines()]
    assert sorted(_by_generation(samples)) == [1, 2]  # rank 0 writes, once per batch
    assert all(len(group) == 4 for group in _by_generation(samples).values())
    assert (run / "adapter_model.safetensors").exists()


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ({}, "the reward 'broken' failed on a batch of 4 completions"),
        ({"nan": True}, "the reward 'broken' returned NaN for completion 0"),
    ],
)
def test_a_reward_that_fails_stops_the_run_naming_it(plugin, tiny, tmp_path, rows, message):
    data = tmp_path / "rows.jsonl"
    line = {"messages": [{"role": "user", "content": "Say something."}], **rows}
    data.write_text(json.dumps(line) + "\n")
    run = tmp_path / "run"
    result = run_cli(
        "--plugin", plugin, "rlhf", "--method", "grpo", "--model", tiny, "--dataset",
        str(data), "--reward-funcs", "low_ids", "broken", "--num-generations", "4",
        "--per-device-train-batch-size", "4", "--max-completion-length", "3",
        "--max-steps", "1", "--disable-progress-bar", "--output-dir", str(run),
    )  # fmt: skip
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr, result.stderr
