"""`martlet rlhf` on the tiny model: the first DPO step is ln 2, accumulation equivalence,
precomputed reference log-probs, every method end to end from the CLI and YAML, and the errors
for requests that cannot work."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml
from martlet import registry
from martlet_peft.full import FullTuner
from martlet_peft.options import TunerOptions
from martlet_peft.peft_methods import LoraTuner
from martlet_sdk.tiny import tiny_model, tiny_tokenizer
from martlet_train.loop import Trainer
from martlet_train.objectives import PreferenceObjective, Reference
from martlet_train.options import TrainOptions
from martlet_train.rlhf import RlhfCollator, precompute_reference

PLUGINS = ("train", "hf", "data", "peft", "accel", "align", "engine-pt")


@dataclass(kw_only=True)
class Options(TunerOptions, TrainOptions):
    pass


def pairs(n: int = 8, seed: int = 0) -> list[dict]:
    """Encoded preference rows: a shared prompt, then different chosen/rejected responses."""
    import random

    tok = tiny_tokenizer()
    rng = random.Random(seed)
    words = "the capital of france is paris two plus two is four a tiny model learns".split()
    out = []
    for _ in range(n):
        prompt = tok(" ".join(rng.choice(words) for _ in range(rng.randint(2, 6))))["input_ids"]
        sides = []
        for _ in range(2):
            answer = tok(" ".join(rng.choice(words) for _ in range(rng.randint(1, 7))))
            ids = prompt + answer["input_ids"]
            sides.append((ids, [-100] * len(prompt) + answer["input_ids"]))
        (ids, labels), (rids, rlabels) = sides
        out.append(
            {
                "input_ids": ids,
                "attention_mask": [1] * len(ids),
                "labels": labels,
                "rejected_input_ids": rids,
                "rejected_attention_mask": [1] * len(rids),
                "rejected_labels": rlabels,
            }
        )
    return out


def collator():
    from martlet_train.batching import PaddingCollator

    return RlhfCollator(PaddingCollator(0))


def dpo_objective(reference_model=None, **options):
    loss = registry.get("losses", "dpo").load()
    return PreferenceObjective(loss, {"beta": 0.1, **options}, reference=Reference(reference_model))


@pytest.fixture(autouse=True)
def _plugins(martlet_manager):
    martlet_manager(*PLUGINS)


def test_the_first_dpo_step_with_the_policy_equal_to_its_reference_is_ln_2():
    model = LoraTuner().prepare(tiny_model(seed=0), TunerOptions(lora_dropout=0.1))
    model.train()  # adapter dropout on: B = 0 still makes the policy equal the reference
    batch = collator()(pairs(6))
    loss_sum, count, metrics = dpo_objective()(model, batch)
    assert int(count) == 6
    assert float(loss_sum) / 6 == pytest.approx(math.log(2), abs=1e-6)
    assert metrics["rewards/margin"][0] == pytest.approx(0.0, abs=1e-6)


def run_trainer(tmp: Path, *, batch: int, accumulation: int, data: list[dict]) -> Trainer:
    options = Options(
        output_dir=str(tmp),
        seed=0,
        logging_steps=1,
        save_steps=1000,
        disable_progress_bar=True,
        device="cpu",
        lr_scheduler_type="constant",
        max_grad_norm=0.0,
        optim="sgd",
        learning_rate=1.0,
        max_steps=1,
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=accumulation,
    )
    tuner = FullTuner()
    model = tuner.prepare(tiny_model(seed=0), options)
    trainer = Trainer(
        model,
        tuner,
        options,
        train_rows=data,
        collate=collator(),
        loss_fn=dpo_objective(tiny_model(seed=0)),
    )
    trainer.train()
    return trainer


def test_one_batch_of_8_pairs_equals_4_micro_batches_of_2(tmp_path):
    data = pairs(8)
    a = run_trainer(tmp_path / "a", batch=8, accumulation=1, data=data)
    b = run_trainer(tmp_path / "b", batch=2, accumulation=4, data=data)
    start = tiny_model(seed=0).state_dict()
    wa, wb = a.model.state_dict(), b.model.state_dict()
    assert any(not torch.equal(wa[k], start[k]) for k in wa)
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=1e-6, rtol=1e-5)
    la = json.loads((tmp_path / "a" / "metrics.jsonl").read_text().splitlines()[0])
    lb = json.loads((tmp_path / "b" / "metrics.jsonl").read_text().splitlines()[0])
    assert la["loss"] == pytest.approx(lb["loss"], rel=1e-6)
    assert la["loss"] == pytest.approx(math.log(2), abs=1e-6)  # full tuning: a copy as reference
    assert la["rewards/accuracy"] == lb["rewards/accuracy"]


def test_precomputed_reference_logps_equal_the_live_ones():
    from accelerate import Accelerator

    model = LoraTuner().prepare(tiny_model(seed=0), TunerOptions(lora_dropout=0.0))
    with torch.no_grad():  # move the policy away from the reference
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    data = pairs(6)
    objective = dpo_objective()
    live = objective(model, collator()(data))

    class Config:
        per_device_eval_batch_size = 4

    precompute_reference(objective, model, data, collator(), Config(), Accelerator(cpu=True))
    assert all(len(r["reference_logps"]) == 2 for r in data)
    stored = objective(model, collator()(data))
    assert float(stored[0]) == pytest.approx(float(live[0]), rel=1e-5)
    assert float(live[0]) / 6 != pytest.approx(math.log(2), abs=1e-4)


# --------------------------------------------------------------------------- CLI, end to end


@pytest.fixture
def cli(martlet_cli):
    return martlet_cli


def rlhf_args(model_dir: Path, out: Path, method: str, dataset: str, *extra: str) -> list[str]:
    return [
        "rlhf",
        "--method",
        method,
        "--model",
        str(model_dir),
        "--dataset",
        dataset,
        "--output-dir",
        str(out),
        "--disable-progress-bar",
        "--seed",
        "0",
        "--split-dataset-ratio",
        "0.25",
        "--eval-on-start",
        "--per-device-train-batch-size",
        "8",
        "--per-device-eval-batch-size",
        "16",
        "--logging-steps",
        "1",
        *extra,
    ]


def evals(out: Path) -> list[dict]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [m for m in map(json.loads, lines) if "eval_loss" in m]


@pytest.mark.parametrize(
    ("method", "extra"),
    [
        ("dpo", ()),
        (
            "dpo",
            (
                "--loss-type",
                "sigmoid",
                "--loss-type",
                "hinge",
                "--loss-weights",
                "1.0",
                "--loss-weights",
                "0.5",
                "--rpo-alpha",
                "0.1",
            ),
        ),
        ("simpo", ()),
        ("cpo", ()),
        ("orpo", ("--beta", "1.0")),  # weight the odds-ratio term against the NLL
    ],
)
def test_preference_methods_raise_the_held_out_margin(cli, tiny_model_dir, tmp_path, method, extra):
    out = tmp_path / method
    result = cli(
        *rlhf_args(
            tiny_model_dir,
            out,
            method,
            "sample-dpo#64",
            "--max-steps",
            "6",
            "--eval-steps",
            "6",
            "--learning-rate",
            "3e-3",
            *extra,
        )
    )
    assert result.exit_code == 0, result.stderr + result.stdout
    first, last = evals(out)[0], evals(out)[-1]
    assert first["step"] == 0 and last["step"] == 6
    assert last["eval_rewards/margin"] > first["eval_rewards/margin"]
    # (accuracy on 16 held-out pairs of a random tiny model is noise; the embedded model's
    # DPO test checks it)
    assert last["eval_loss"] < first["eval_loss"]
    assert (out / "adapter_model.safetensors").is_file() and (out / "loss.png").is_file()
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["method"]["name"] == method


def test_kto_separates_desirable_from_undesirable(cli, tiny_model_dir, tmp_path):
    out = tmp_path / "kto"
    result = cli(
        *rlhf_args(
            tiny_model_dir,
            out,
            "kto",
            "sample-kto#64",
            "--max-steps",
            "6",
            "--eval-steps",
            "6",
            "--learning-rate",
            "3e-3",
            "--desirable-weight",
            "1.0",
            "--undesirable-weight",
            "1.2",
        )
    )
    assert result.exit_code == 0, result.stderr + result.stdout
    first, last = evals(out)[0], evals(out)[-1]
    gap = lambda m: m["eval_rewards/chosen"] - m["eval_rewards/rejected"]  # noqa: E731
    assert gap(first) == pytest.approx(0.0, abs=1e-6)  # policy == reference
    assert gap(last) > gap(first)
    assert last["eval_loss"] < first["eval_loss"]
    assert "eval_kl" in last


def test_a_yaml_config_with_rlhf_args(cli, tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    file = tmp_path / "dpo.yaml"
    file.write_text(
        yaml.safe_dump(
            {
                "model_args": {"model": str(tiny_model_dir)},
                "training_args": {
                    "output_dir": str(out),
                    "max_steps": 2,
                    "per_device_train_batch_size": 4,
                    "disable_progress_bar": True,
                    "half_precision_backend": "auto",
                    "fallback_on_cpu": True,
                },
                "rlhf_args": {
                    "method": "dpo",
                    "beta": 0.2,
                    "reference_free": True,
                    "train_dataset": ["sample-dpo#16"],
                },
            }
        )
    )
    result = cli("rlhf", "--config", str(file))
    assert result.exit_code == 0, result.stderr + result.stdout
    config = yaml.safe_load((out / "config.yaml").read_text())
    # ms-swift's flat `rlhf_args` are read; the loss's options are written under it
    assert config["method"]["beta"] == 0.2 and config["reference_free"] is True
    assert config["dataset"] == ["sample-dpo#16"]


def test_full_tuning_precomputed_reference_and_a_separate_ref_model(cli, tiny_model_dir, tmp_path):
    out = tmp_path / "full"
    result = cli(
        *rlhf_args(
            tiny_model_dir,
            out,
            "dpo",
            "sample-dpo#24",
            "--tuner",
            "full",
            "--ref-model",
            str(tiny_model_dir),
            "--precompute-ref-logps",
            "--max-steps",
            "2",
            "--eval-steps",
            "2",
        )
    )
    assert result.exit_code == 0, result.stderr + result.stdout
    first = evals(out)[0]
    assert first["eval_loss"] == pytest.approx(math.log(2), abs=1e-5)
    assert (out / "model.safetensors").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--method", "dpo", "--dataset", "sample-sft#8"), "trains on preference pairs"),
        (("--method", "kto", "--dataset", "sample-dpo#8"), "KTO rows"),
        (("--method", "sft", "--dataset", "sample-sft#8"), "supervised objective"),
        (("--method", "dpx", "--dataset", "sample-dpo#8"), "dpo"),
        (("--method", "simpo", "--ref-model", "x", "--dataset", "sample-dpo#8"), "reference-free"),
        (("--method", "gkd", "--dataset", "sample-sft#8"), "--teacher-model"),
        (("--method", "dpo", "--packing", "--dataset", "sample-dpo#8"), "--packing"),
        (("--method", "dpo", "--loss-type", "sigmod", "--dataset", "sample-dpo#8"), "sigmoid"),
        (("--method", "simpo", "--beta", "-1", "--dataset", "sample-dpo#8"), "beta"),
        (
            (
                "--method",
                "dpo",
                "--loss-type",
                "ipo",
                "--loss-weights",
                "1",
                "--loss-weights",
                "2",
                "--dataset",
                "sample-dpo#8",
            ),
            "--loss-weights",
        ),
    ],
)
def test_requests_that_cannot_work_fail_clearly(cli, tiny_model_dir, tmp_path, args, message):
    result = cli("rlhf", "--model", str(tiny_model_dir), "--output-dir", str(tmp_path / "o"), *args)
    assert result.exit_code != 0
    assert message in result.stderr, result.stderr


def test_a_reward_model_ranks_held_out_chosen_above_rejected(cli, tiny_model_dir, tmp_path):
    out = tmp_path / "rm"
    args = rlhf_args(tiny_model_dir, out, "rm", "sample-dpo#128", "--max-steps", "16")
    result = cli(*args, "--eval-steps", "16", "--learning-rate", "3e-3")
    assert result.exit_code == 0, result.stderr + result.stdout
    first, last = evals(out)[0], evals(out)[-1]
    assert last["eval_rewards/accuracy"] > 0.6  # 32 held-out pairs; chance is 0.5
    assert last["eval_rewards/margin"] > first["eval_rewards/margin"]
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["task_type"] == "seq_cls"
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["task_type"] == "SEQ_CLS"


def test_gkd_brings_the_student_towards_the_teacher(cli, tiny_model_dir, tmp_path):
    from martlet_sdk.tiny import tiny_model_dir as write_tiny

    teacher = write_tiny(tmp_path / "teacher", seed=1)
    out = tmp_path / "gkd"
    args = rlhf_args(tiny_model_dir, out, "gkd", "sample-sft#48", "--max-steps", "6")
    result = cli(
        *args,
        "--teacher-model",
        str(teacher),
        "--lmbda",
        "0.5",
        "--max-completion-length",
        "8",
        "--eval-steps",
        "6",
        "--learning-rate",
        "3e-3",
    )
    assert result.exit_code == 0, result.stderr + result.stdout
    first, last = evals(out)[0], evals(out)[-1]
    assert last["eval_jsd"] < first["eval_jsd"]
    train = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    on_policy = [m["on_policy"] for m in train if "on_policy" in m]
    assert 0 < sum(on_policy) < len(on_policy)  # some steps on the student's own answers
    for m in train:  # the loss is normalised by the tokens of the batch the step trained on
        if "jsd" in m:
            assert m["loss"] == pytest.approx(m["jsd"], rel=1e-4)


def test_gkd_sft_alpha_adds_the_nll_of_the_responses(cli, tiny_model_dir, tmp_path):
    out = tmp_path / "gkd"
    args = rlhf_args(tiny_model_dir, out, "gkd", "sample-sft#16", "--max-steps", "1")
    result = cli(
        *args, "--teacher-model", str(tiny_model_dir), "--lmbda", "0", "--sft-alpha", "0.5"
    )
    assert result.exit_code == 0, result.stderr + result.stdout
    first = evals(out)[0]
    assert first["eval_jsd"] == pytest.approx(0.0, abs=1e-6)  # the teacher is the student
    assert first["eval_loss"] == pytest.approx(0.5 * first["eval_nll"], rel=1e-4)


@pytest.mark.parametrize(
    ("method", "dataset", "extra"),
    [
        ("kto", "sample-kto#16", {"desirable_weight": 1.0, "undesirable_weight": 1.5}),
        ("simpo", "sample-dpo#16", {"simpo_gamma": 0.5, "beta": 2.0}),
        ("cpo", "sample-dpo#16", {"cpo_alpha": 0.5}),
        ("orpo", "sample-dpo#16", {"beta": 0.2}),
        ("rm", "sample-dpo#16", {"center_rewards_coefficient": 0.01}),
        ("gkd", "sample-sft#16", {"gkd_beta": 0.3, "lmbda": 0.0}),
        ("dpo", "sample-dpo#16", {"loss_type": ["ipo"], "precompute_ref_logps": True}),
    ],
)
def test_every_method_runs_from_yaml(cli, tiny_model_dir, tmp_path, method, dataset, extra):
    out = tmp_path / method
    rlhf_section = {"method": method, "train_dataset": [dataset], **extra}
    if method == "gkd":
        rlhf_section["teacher_model"] = str(tiny_model_dir)
    file = tmp_path / f"{method}.yaml"
    file.write_text(
        yaml.safe_dump(
            {
                "model": str(tiny_model_dir),
                "training_args": {
                    "output_dir": str(out),
                    "max_steps": 1,
                    "per_device_train_batch_size": 4,
                    "disable_progress_bar": True,
                },
                "rlhf_args": rlhf_section,
            }
        )
    )
    result = cli("rlhf", "--config", str(file))
    assert result.exit_code == 0, result.stderr + result.stdout
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["method"]["name"] == method
    for key, value in extra.items():
        # the loss's own options are written under it (GKD's beta read from gkd_beta, its
        # alias), the command's (lmbda, precompute_ref_logps) at the top
        key = "beta" if key == "gkd_beta" else key
        assert config["method"].get(key, config.get(key)) == value, key
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert metrics and math.isfinite(metrics[-1]["loss"])


def test_the_reward_objective_subtracts_each_pairs_margin():
    from martlet.heads import sequence_scores
    from martlet_sdk.tiny import tiny_config
    from martlet_train.objectives import RewardObjective
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    config = tiny_config(tiny_tokenizer(), num_labels=1)
    config.pad_token_id = 0
    model = AutoModelForSequenceClassification.from_config(config).eval()
    batch = collator()(pairs(3))
    objective = RewardObjective(registry.get("losses", "rm").load(), {})
    with torch.no_grad():
        plain, n, _ = objective(model, batch)
        margin = torch.tensor([0.5, 1.0, 2.0])
        with_margin, _, metrics = objective(model, {**batch, "margin": margin})
        chosen = sequence_scores(model, batch["input_ids"], batch["attention_mask"])
        rejected = sequence_scores(
            model, batch["rejected_input_ids"], batch["rejected_attention_mask"]
        )
    expected = -torch.nn.functional.logsigmoid(chosen - rejected - margin).sum()
    assert int(n) == 3
    torch.testing.assert_close(with_margin, expected, rtol=1e-4, atol=1e-5)
    assert float(with_margin) > float(plain)
    assert metrics["rewards/accuracy"][1] == 3
