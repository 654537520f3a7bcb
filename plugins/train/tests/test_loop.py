"""The training loop on the tiny model: accumulation equivalence, exact resume, checkpoints,
early stopping, and the run directory it leaves."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from martlet_peft.full import FullTuner
from martlet_peft.options import TunerOptions
from martlet_peft.peft_methods import LoraTuner
from martlet_sdk.tiny import tiny_model, tiny_tokenizer
from martlet_train.checkpoint import list_checkpoints
from martlet_train.loop import Trainer
from martlet_train.options import TrainOptions


@dataclass(kw_only=True)
class Options(TunerOptions, TrainOptions):
    pass


def rows(n: int = 16, seed: int = 0) -> list[dict]:
    """Encoded rows of varied lengths; the first part of each is a masked 'prompt'."""
    tok = tiny_tokenizer()
    rng = random.Random(seed)
    words = "the capital of france is paris two plus two is four a tiny model learns".split()
    out = []
    for _ in range(n):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(3, 14)))
        ids = tok(text)["input_ids"]
        cut = rng.randint(1, max(1, len(ids) // 2))
        out.append({"input_ids": ids, "labels": [-100] * cut + ids[cut:]})
    return out


def collate(batch: list[dict]) -> dict[str, torch.Tensor]:
    width = max(len(r["input_ids"]) for r in batch)
    ids = torch.full((len(batch), width), 0)
    labels = torch.full((len(batch), width), -100)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, r in enumerate(batch):
        n = len(r["input_ids"])
        ids[i, :n] = torch.tensor(r["input_ids"])
        labels[i, :n] = torch.tensor(r["labels"])
        mask[i, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def run(tmp: Path, tuner, *, data=None, model=None, **overrides) -> tuple[Trainer, object]:
    defaults = dict(
        output_dir=str(tmp),
        seed=0,
        logging_steps=1,
        save_steps=1000,
        disable_progress_bar=True,
        device="cpu",
        lr_scheduler_type="constant",
        max_grad_norm=0.0,
        lora_dropout=0.0,
    )
    options = Options(**{**defaults, **overrides})
    torch.manual_seed(options.seed)
    model = model or tiny_model(seed=0)
    prepared = tuner.prepare(model, options)
    trainer = Trainer(
        prepared,
        tuner,
        options,
        train_rows=data or rows(),
        collate=collate,
        tokenizer=tiny_tokenizer(),
    )
    return trainer, trainer.train()


def weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    model = trainer.accelerator.unwrap_model(trainer.model)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_one_batch_of_8_equals_4_micro_batches_of_2(tmp_path):
    common = dict(optim="sgd", learning_rate=0.5, max_steps=1)
    a, _ = run(
        tmp_path / "a",
        FullTuner(),
        per_device_train_batch_size=8,
        gradient_accumulation_steps=1,
        **common,
    )
    b, _ = run(
        tmp_path / "b",
        FullTuner(),
        per_device_train_batch_size=2,
        gradient_accumulation_steps=4,
        **common,
    )
    wa, wb = weights(a), weights(b)
    assert any(not torch.equal(wa[k], tiny_model(seed=0).state_dict()[k]) for k in wa)
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=1e-6, rtol=1e-5)
    la = json.loads((tmp_path / "a" / "metrics.jsonl").read_text().splitlines()[0])["loss"]
    lb = json.loads((tmp_path / "b" / "metrics.jsonl").read_text().splitlines()[0])["loss"]
    assert la == pytest.approx(lb, rel=1e-6)


def test_the_step_loss_is_the_mean_over_all_target_tokens_of_the_step(tmp_path):
    data = rows(8)
    trainer, _ = run(
        tmp_path,
        FullTuner(),
        data=data,
        optim="sgd",
        learning_rate=0.0,
        max_steps=1,
        per_device_train_batch_size=2,
        gradient_accumulation_steps=4,
    )
    logged = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])["loss"]
    model = tiny_model(seed=0)
    batch = collate(data)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    expected = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.size(-1)),
        batch["labels"][:, 1:].reshape(-1),
        ignore_index=-100,
    )
    assert logged == pytest.approx(float(expected), rel=1e-5)


class StopAt:
    """A callback that interrupts the run the way Ctrl-C does."""

    def __init__(self, step: int) -> None:
        self.step, self.trainer = step, None

    def on_log(self, step, metrics):
        if step == self.step and "loss" in metrics:
            self.trainer.request_stop()

    def on_end(self):
        pass


@pytest.mark.parametrize("tuner_cls", [LoraTuner, FullTuner])
def test_an_interrupted_and_resumed_run_ends_with_the_same_weights(tmp_path, tuner_cls):
    settings = dict(
        max_steps=6,
        per_device_train_batch_size=2,
        gradient_accumulation_steps=2,
        learning_rate=1e-2,
        lr_scheduler_type="cosine",
        warmup_steps=2,
        max_grad_norm=1.0,
        lora_dropout=0.1,
        weight_decay=0.01,
    )
    straight, _ = run(tmp_path / "straight", tuner_cls(), **settings)

    # the same run, stopped after step 4 (as Ctrl-C does), then resumed from its checkpoint
    options = Options(
        output_dir=str(tmp_path / "split"),
        seed=0,
        logging_steps=1,
        save_steps=1000,
        disable_progress_bar=True,
        device="cpu",
        **settings,
    )
    torch.manual_seed(0)
    tuner = tuner_cls()
    stopper = StopAt(4)
    trainer = Trainer(
        tuner.prepare(tiny_model(seed=0), options),
        tuner,
        options,
        train_rows=rows(),
        collate=collate,
        callbacks=[stopper],
    )
    stopper.trainer = trainer
    first = trainer.train()
    assert first.interrupted and first.global_step == 4
    assert [p.name for p in list_checkpoints(tmp_path / "split")] == ["checkpoint-4"]

    resumed, result = run(
        tmp_path / "split", tuner_cls(), resume_from_checkpoint="auto", **settings
    )
    assert result.global_step == 6 and not result.interrupted
    a, b = weights(straight), weights(resumed)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=1e-6, rtol=0)
    straight_log = (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()
    split_log = (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()
    losses = lambda lines: [json.loads(x)["loss"] for x in lines if '"loss"' in x]  # noqa: E731
    assert losses(split_log) == pytest.approx(losses(straight_log), rel=1e-6)


def test_checkpoints_rotate_and_half_written_ones_are_ignored(tmp_path):
    (tmp_path / ".checkpoint-99.tmp").mkdir(parents=True)
    run(tmp_path, LoraTuner(), max_steps=7, save_steps=2, save_total_limit=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-4", "checkpoint-6"]
    ckpt = tmp_path / "checkpoint-6"
    assert (ckpt / "adapter_model.safetensors").is_file()
    assert (ckpt / "trainer_state" / "state.json").is_file()
    state = json.loads((ckpt / "trainer_state" / "state.json").read_text())
    assert state["global_step"] == 6


def test_the_run_directory_holds_a_loadable_adapter_metrics_and_a_plot(tmp_path):
    from peft import PeftModel

    trainer, result = run(tmp_path, LoraTuner(), max_steps=4)
    assert result.global_step == 4
    assert result.metrics["train_loss"] > 0 and result.metrics["tokens_per_second"] > 0
    assert 0 <= result.metrics["padding_fraction"] < 1
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [1, 2, 3, 4]
    assert {"loss", "learning_rate", "tokens_per_second", "padding_fraction"} <= lines[0].keys()
    png = (tmp_path / "loss.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    model = PeftModel.from_pretrained(tiny_model(seed=0), str(tmp_path))
    batch = collate(rows(2))
    with torch.no_grad():
        expected = (
            trainer.accelerator.unwrap_model(trainer.model)
            .eval()(input_ids=batch["input_ids"])
            .logits
        )
        torch.testing.assert_close(model.eval()(input_ids=batch["input_ids"]).logits, expected)
    assert (tmp_path / "tokenizer.json").is_file()


def test_eval_loss_and_early_stopping(tmp_path):
    options = Options(
        output_dir=str(tmp_path),
        seed=0,
        logging_steps=1,
        eval_steps=1,
        save_steps=1000,
        disable_progress_bar=True,
        device="cpu",
        max_steps=50,
        optim="sgd",
        learning_rate=50.0,
        early_stopping_patience=2,
        lr_scheduler_type="constant",
        max_grad_norm=0.0,
    )
    tuner = FullTuner()
    trainer = Trainer(
        tuner.prepare(tiny_model(seed=0), options),
        tuner,
        options,
        train_rows=rows(),
        eval_rows=rows(4, seed=1),
        collate=collate,
    )
    result = trainer.train()
    assert result.stopped_early and result.global_step < 50
    evals = [
        json.loads(x)
        for x in (tmp_path / "metrics.jsonl").read_text().splitlines()
        if "eval_loss" in x
    ]
    assert len(evals) >= 3


def test_no_rows_and_nothing_trainable_are_clear_errors(tmp_path):
    from martlet.errors import ConfigError

    options = Options(output_dir=str(tmp_path), device="cpu")
    with pytest.raises(ConfigError, match="no training rows"):
        Trainer(tiny_model(), FullTuner(), options, train_rows=[], collate=collate)
    frozen = tiny_model()
    frozen.requires_grad_(False)

    class Nothing(FullTuner):
        def _prepare(self, model, config):
            return model

    with pytest.raises(ConfigError, match="nothing to train"):
        Trainer(frozen, Nothing(), options, train_rows=rows(), collate=collate)


def test_resume_from_something_that_is_not_a_checkpoint(tmp_path):
    from martlet.errors import MartletError

    with pytest.raises(MartletError, match="is not a Martlet checkpoint"):
        run(tmp_path / "x", LoraTuner(), max_steps=1, resume_from_checkpoint=str(tmp_path))


def test_runs_with_different_precisions_in_one_process(tmp_path):
    """The Python API may train twice in one process (a notebook): accelerate's process-wide
    state must not refuse the second run's precision."""
    _, first = run(tmp_path / "a", FullTuner(), max_steps=1, mixed_precision="no")
    _, second = run(tmp_path / "b", FullTuner(), max_steps=1, mixed_precision="bf16")
    assert first.global_step == second.global_step == 1


def test_reporting_is_callbacks_the_loop_calls_in_order(tmp_path, capsys):
    """The built-in reporters (metrics.jsonl, the log lines, loss.png) and a `--report-to`
    callback see the same lines; the optional `on_step` is called after every step; `on_end`
    comes after the result is saved."""
    from martlet_train.loop import Trainer

    seen = []

    class Recorder:
        def on_log(self, step, metrics):
            seen.append(("log", step, "loss" in metrics))

        def on_step(self, step):
            seen.append(("step", step))

        def on_end(self):
            seen.append(("end", (tmp_path / "adapter_model.safetensors").is_file()))

    class Plain:  # no on_step: passed over
        def on_log(self, step, metrics):
            seen.append(("plain", step))

        def on_end(self):
            pass

    tuner = LoraTuner()
    options = Options(
        output_dir=str(tmp_path), seed=0, logging_steps=2, save_steps=1000, max_steps=4,
        disable_progress_bar=True, device="cpu", lora_dropout=0.0,
    )  # fmt: skip
    torch.manual_seed(0)
    prepared = tuner.prepare(tiny_model(seed=0), options)
    trainer = Trainer(
        prepared, tuner, options, train_rows=rows(), collate=collate,
        tokenizer=tiny_tokenizer(), callbacks=[Recorder(), Plain()],
    )  # fmt: skip
    trainer.train()
    assert seen == [
        ("step", 1),
        ("log", 2, True), ("plain", 2), ("step", 2),
        ("step", 3),
        ("log", 4, True), ("plain", 4), ("step", 4),
        ("end", True),
    ]  # fmt: skip
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in logged] == [2, 4]
    assert (tmp_path / "loss.png").is_file()
    printed = capsys.readouterr().out
    assert "step=2" in printed and "step=4" in printed


def test_a_steps_time_includes_preparing_its_batches(tmp_path):
    """An objective's `prepare` (online RL's and GKD's generation) is part of the step: its
    time counts in step_seconds and tokens_per_second (it was left out, making generation
    look free)."""
    import time

    from martlet_train.losses import causal_lm_loss

    class Slow:
        def __call__(self, model, batch):
            return causal_lm_loss(model, batch)

        def prepare(self, model, batch):
            time.sleep(0.4)
            return batch

    options = Options(
        output_dir=str(tmp_path), seed=0, logging_steps=1, save_steps=1000, max_steps=2,
        disable_progress_bar=True, device="cpu", lora_dropout=0.0, per_device_train_batch_size=2,
    )  # fmt: skip
    tuner = LoraTuner()
    trainer = Trainer(
        tuner.prepare(tiny_model(seed=0), options), tuner, options, train_rows=rows(),
        collate=collate, tokenizer=tiny_tokenizer(), loss_fn=Slow(),
    )  # fmt: skip
    trainer.train()
    logged = [m for m in trainer.read_metrics() if "step_seconds" in m]
    assert len(logged) == 2 and all(m["step_seconds"] >= 0.4 for m in logged), logged
