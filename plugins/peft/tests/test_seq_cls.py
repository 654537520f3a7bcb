"""--task-type seq_cls: every tuner that can keeps a reward model's new `score` head trainable,
saves it, reloads and merges to identical scores; the others say why not."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from martlet.errors import ConfigError
from martlet.registry import get
from martlet_peft.base import linear_module_names
from martlet_peft.options import TunerOptions
from martlet_sdk.contracts.tuner import _batch

# per tuner: options that make a short run on the tiny model meaningful
SETTINGS = {
    "lora": dict(lora_dropout=0.0),
    "adalora": dict(lora_dropout=0.0, adalora_total_step=8, adalora_tinit=2, adalora_tfinal=2),
    "ia3": dict(learning_rate=5e-2),
    "vera": dict(vera_rank=16, learning_rate=5e-2),
    "prompt-tuning": dict(num_virtual_tokens=4, learning_rate=5e-2),
    "prefix-tuning": dict(num_virtual_tokens=4),
    "full": dict(learning_rate=1e-3),
    "freeze": dict(trainable_layers=1, learning_rate=1e-3),
    "galore": dict(galore_rank=4, galore_update_proj_gap=2, learning_rate=1e-3),
    "lisa": dict(lisa_activated_layers=1, lisa_step_interval=2, learning_rate=1e-3),
    "llamapro": dict(llamapro_num_new_blocks=2, learning_rate=1e-2),
}


@dataclass(kw_only=True)
class Config(TunerOptions):
    learning_rate: float = 1e-2
    weight_decay: float = 0.0
    max_steps: int = 8
    seed: int = 0


def reward_model(tokenizer, seed=0, head_seed=None):
    """The tiny model's body with a one-output `score` head (random, or from ``head_seed``)."""
    from martlet_sdk.tiny import tiny_config
    from transformers import AutoModelForSequenceClassification

    config = tiny_config(tokenizer, num_labels=1)  # pad_token_id: the tokenizer's
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForSequenceClassification.from_config(config)
        torch.manual_seed(seed if head_seed is None else head_seed)
        torch.nn.init.normal_(model.score.weight, std=0.5)
    return model.eval()


@pytest.fixture
def pairs(tiny_tokenizer):
    """A right-padded batch: row 0 is preferred to row 1 (the pad token is not in the text, so
    transformers' own pooling takes each row's last real token)."""
    tiny_tokenizer.padding_side = "right"
    return _batch(tiny_tokenizer)


def scores(model, batch):
    model.eval()
    with torch.no_grad():
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    return out.logits.squeeze(-1)


def train(tuner, model, config, batch, steps=6):
    optimizer = tuner.create_optimizer(model, config) or torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=config.learning_rate
    )
    model.train()
    losses = []
    for step in range(steps):
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        chosen, rejected = out.logits.squeeze(-1)
        loss = -torch.nn.functional.logsigmoid(chosen - rejected)  # Bradley-Terry
        extra = tuner.regularization(model) if hasattr(tuner, "regularization") else None
        (loss + extra if extra is not None else loss).backward()
        optimizer.step()
        if hasattr(tuner, "on_step"):
            tuner.on_step(model, step + 1)
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    model.eval()
    return losses


def tuner_and_config(name, **overrides):
    settings = {**SETTINGS.get(name, {}), **overrides}
    return get("tuners", name).load()(), Config(tuner=name, task_type="seq_cls", **settings)


PEFT_TUNERS = ["lora", "adalora", "ia3", "vera", "boft", "loha", "lokr", "prompt-tuning"]


@pytest.fixture(autouse=True)
def _peft(martlet_manager):
    martlet_manager("peft")


@pytest.mark.parametrize("name", PEFT_TUNERS)
def test_peft_tuners_train_save_and_reload_the_score_head(name, tiny_tokenizer, pairs, tmp_path):
    from peft import PeftModel, TaskType

    tuner, config = tuner_and_config(name)
    model = tuner.prepare(reward_model(tiny_tokenizer), config)
    assert model.peft_config["default"].task_type == TaskType.SEQ_CLS
    head = [n for n, p in model.named_parameters() if p.requires_grad and "score" in n]
    assert head and all("modules_to_save" in n for n in head)
    losses = train(tuner, model, config, pairs)
    assert min(losses[1:]) < losses[0], losses  # one pair, a high rate: it may overshoot
    expected = scores(model, pairs)
    tuner.save(model, str(tmp_path / "out"))
    # a fresh reward model whose own head differs: the saved head replaces it
    fresh = reward_model(tiny_tokenizer, head_seed=1)
    assert not torch.allclose(scores(fresh, pairs), expected)
    torch.testing.assert_close(
        scores(tuner.load(fresh, str(tmp_path / "out")), pairs), expected, atol=1e-5, rtol=1e-5
    )
    plain = PeftModel.from_pretrained(
        reward_model(tiny_tokenizer, head_seed=2), str(tmp_path / "out")
    )
    torch.testing.assert_close(scores(plain, pairs), expected, atol=1e-5, rtol=1e-5)
    if name != "prompt-tuning":
        merged = tuner.merge(plain)
        assert type(merged).__name__ == "LlamaForSequenceClassification"
        torch.testing.assert_close(scores(merged, pairs), expected, atol=1e-4, rtol=1e-4)


def test_lora_all_linear_leaves_the_score_head_to_modules_to_save(tiny_tokenizer):
    model = reward_model(tiny_tokenizer)
    assert "score" not in linear_module_names(model, ["all-linear"])
    tuner, config = tuner_and_config("lora")
    peft_model = tuner.prepare(model, config)
    assert "score" not in peft_model.peft_config["default"].target_modules
    assert "score" in peft_model.peft_config["default"].modules_to_save


@pytest.mark.parametrize(
    ("name", "overrides"),
    [
        ("full", {}),
        ("freeze", {}),
        ("freeze", {"trainable_layers": 0}),  # the head alone: a linear probe
        ("lisa", {}),
        ("llamapro", {}),
        ("galore", {}),
    ],
)
def test_whole_model_tuners_train_the_score_head(name, overrides, tiny_tokenizer, pairs, tmp_path):
    if name == "galore":
        pytest.importorskip("galore_torch")
    tuner, config = tuner_and_config(name, **overrides)
    model = tuner.prepare(reward_model(tiny_tokenizer), config)
    assert model.score.weight.requires_grad
    if name == "freeze" and overrides:
        assert [n for n, p in model.named_parameters() if p.requires_grad] == ["score.weight"]
    losses = train(tuner, model, config, pairs)
    assert min(losses[1:]) < losses[0], losses  # one pair, a high rate: it may overshoot
    expected = scores(model, pairs)
    tuner.save(model, str(tmp_path / "out"))
    reloaded = tuner.load(reward_model(tiny_tokenizer, head_seed=1), str(tmp_path / "out"))
    torch.testing.assert_close(scores(reloaded, pairs), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("name", "why"), [("prefix-tuning", "key/value"), ("reft", "score")])
def test_tuners_that_cannot_train_a_reward_model_say_so(name, why, tiny_tokenizer):
    tuner, config = tuner_and_config(name)
    with pytest.raises(ConfigError) as info:
        tuner.prepare(reward_model(tiny_tokenizer), config)
    assert f"--tuner {name} cannot train a reward" in info.value.message()
    assert why in info.value.message()


def test_seq_cls_needs_a_model_with_a_score_head(tiny_model):
    tuner, config = tuner_and_config("lora")
    with pytest.raises(ConfigError, match="has no sequence classification head"):
        tuner.prepare(tiny_model, config)


def test_the_task_type_option():
    assert TunerOptions().task_type == "causal_lm"
    assert TunerOptions(task_type="reward").task_type == "seq_cls"
    with pytest.raises(ConfigError, match="causal_lm, seq_cls, reward"):
        TunerOptions(task_type="embedding")


def test_one_flag_sets_the_loader_and_the_tuner():
    hf = pytest.importorskip("martlet_hf.options", reason="martlet-hf's option groups")
    from martlet import config as cfg

    @dataclass(kw_only=True)
    class Job(hf.ModelOptions, TunerOptions):
        pass

    parsed = cfg.parse_flags(Job, ["--model", "m", "--task-type", "seq_cls"])
    job = cfg.build(Job, flags=parsed.values)
    assert job.task_type == "seq_cls" and job.loader_options()["task_type"] == "seq_cls"
