"""Reward (sequence classification) models: loading with task_type seq_cls, and
sequence_scores at each row's last real token — by hand, under padding, through PEFT."""

from __future__ import annotations

import json
import shutil

import martlet
import pytest
import torch
from martlet import config as cfg
from martlet.errors import ConfigError
from martlet.heads import score_module, sequence_scores
from martlet_hf import ModelOptions
from martlet_hf.loaders import normalize_options

TEXTS = ["What is the capital of France?", "Hi", "Two plus two is four."]


def seq_cls_model(tokenizer, seed=0):
    from martlet_sdk.tiny import tiny_config
    from transformers import AutoModelForSequenceClassification

    config = tiny_config(tokenizer, num_labels=1)  # pad_token_id: the tokenizer's
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForSequenceClassification.from_config(config)
        torch.nn.init.normal_(model.score.weight, std=0.5)  # scores far from zero
    return model.eval()


def right_padded(tokenizer, texts):
    tokenizer.padding_side = "right"
    return tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)


def by_hand(model, body, head, input_ids, attention_mask):
    """The head applied to the last hidden state at each row's last real position."""
    hidden = body(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    last = attention_mask.sum(1) - 1
    return head(hidden[torch.arange(len(last)), last]).squeeze(-1)


# ---------------------------------------------------------------------- sequence_scores


def test_the_score_is_the_head_at_the_last_real_token(tiny_tokenizer):
    model = seq_cls_model(tiny_tokenizer)
    batch = right_padded(tiny_tokenizer, TEXTS)
    with torch.no_grad():
        scores = sequence_scores(model, batch["input_ids"], batch["attention_mask"])
        expected = by_hand(model, model.model, model.score, **batch)
    assert scores.shape == (3,)
    torch.testing.assert_close(scores, expected, atol=1e-5, rtol=1e-5)
    assert scores.std() > 1e-3  # the rows really differ


def test_right_padding_does_not_change_a_row_score(tiny_tokenizer):
    model = seq_cls_model(tiny_tokenizer)
    batch = right_padded(tiny_tokenizer, TEXTS)
    assert (batch["attention_mask"] == 0).any()  # some rows are padded
    with torch.no_grad():
        together = sequence_scores(model, batch["input_ids"], batch["attention_mask"])
        alone = torch.cat(
            [
                sequence_scores(model, b["input_ids"], b["attention_mask"])
                for b in (right_padded(tiny_tokenizer, [t]) for t in TEXTS)
            ]
        )
        # more padding still changes nothing, whatever the padding token is
        ids = torch.nn.functional.pad(batch["input_ids"], (0, 5), value=7)
        mask = torch.nn.functional.pad(batch["attention_mask"], (0, 5), value=0)
        wider = sequence_scores(model, ids, mask)
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(wider, together, atol=1e-5, rtol=1e-5)


def test_the_score_is_not_transformers_pad_token_pooling(tiny_tokenizer):
    """A row that ends with the pad token (pad = EOS in many models) is scored at its end."""
    model = seq_cls_model(tiny_tokenizer)
    pad = tiny_tokenizer.pad_token_id
    ids = torch.tensor([[5, 6, 7, pad, 8, pad]])
    mask = torch.ones_like(ids)
    with torch.no_grad():
        ours = sequence_scores(model, ids, mask)
        expected = by_hand(model, model.model, model.score, ids, mask)
        theirs = model(input_ids=ids, attention_mask=mask).logits.squeeze(-1)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(ours, theirs)  # transformers stops before the last pad token


def test_scores_keep_their_gradient(tiny_tokenizer):
    model = seq_cls_model(tiny_tokenizer)
    batch = right_padded(tiny_tokenizer, TEXTS)
    scores = sequence_scores(model, batch["input_ids"], batch["attention_mask"])
    assert scores.requires_grad
    (scores[0] - scores[1]).backward()
    assert model.score.weight.grad is not None and model.score.weight.grad.abs().sum() > 0
    assert model.model.layers[0].self_attn.q_proj.weight.grad.abs().sum() > 0


def test_left_padding_and_empty_rows_are_refused(tiny_tokenizer):
    model = seq_cls_model(tiny_tokenizer)
    ids = torch.tensor([[1, 5, 6], [7, 8, 9]])
    with pytest.raises(ConfigError, match="padded on the right"):
        sequence_scores(model, ids, torch.tensor([[0, 1, 1], [1, 1, 1]]))
    with pytest.raises(ConfigError, match="has no tokens"):
        sequence_scores(model, ids, torch.tensor([[0, 0, 0], [1, 1, 1]]))


def test_a_model_without_a_score_head_is_refused(tiny_model):
    ids = torch.tensor([[1, 2]])
    with pytest.raises(ConfigError, match="no scalar head"):
        sequence_scores(tiny_model, ids, torch.ones_like(ids))


def test_through_a_peft_lora_model(tiny_tokenizer):
    from peft import LoraConfig, TaskType, get_peft_model

    base = seq_cls_model(tiny_tokenizer)
    model = get_peft_model(
        base, LoraConfig(task_type=TaskType.SEQ_CLS, r=4, target_modules=["q_proj", "v_proj"])
    )
    names = [n for n, _ in model.named_modules() if n.endswith("score")]
    assert "base_model.model.score" in names
    head = score_module(model)
    assert type(head).__name__ == "ModulesToSaveWrapper"
    for name, param in model.named_parameters():  # move the LoRA B matrices off zero
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.1)
    batch = right_padded(tiny_tokenizer, TEXTS)
    scores = sequence_scores(model, batch["input_ids"], batch["attention_mask"])
    with torch.no_grad():
        expected = by_hand(model, model.base_model.model.model, head, **batch)
    torch.testing.assert_close(scores.detach(), expected, atol=1e-5, rtol=1e-5)
    scores.sum().backward()
    trained = {n for n, p in model.named_parameters() if p.grad is not None}
    assert any("modules_to_save.default" in n and "score" in n for n in trained)
    assert any("lora_A" in n for n in trained)


def test_through_peft_prompt_tuning_the_virtual_tokens_are_skipped(tiny_tokenizer):
    from peft import PromptTuningConfig, TaskType, get_peft_model

    model = get_peft_model(
        seq_cls_model(tiny_tokenizer),
        PromptTuningConfig(task_type=TaskType.SEQ_CLS, num_virtual_tokens=4),
    )
    batch = right_padded(tiny_tokenizer, TEXTS)
    singles = [right_padded(tiny_tokenizer, [t]) for t in TEXTS]
    with torch.no_grad():
        together = sequence_scores(model, batch["input_ids"], batch["attention_mask"])
        alone = torch.cat([sequence_scores(model, **b) for b in singles])
        # an unpadded row's score is the head at the very last position
        last = torch.cat([model(**b).logits.squeeze(-1) for b in singles])
    torch.testing.assert_close(alone, last, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------- loading


def test_load_a_folder_with_a_scalar_head(tiny_model_dir):
    model, tokenizer = martlet.load_model(str(tiny_model_dir), task_type="seq_cls")
    assert type(model).__name__ == "LlamaForSequenceClassification"
    assert model.config.num_labels == 1 and model.score.out_features == 1
    assert model.config.pad_token_id == tokenizer.pad_token_id
    # the body is the causal LM's own
    causal, _ = martlet.load_model(str(tiny_model_dir))
    torch.testing.assert_close(model.model.embed_tokens.weight, causal.model.embed_tokens.weight)
    batch = right_padded(tokenizer, TEXTS)
    with torch.no_grad():
        assert sequence_scores(model, batch["input_ids"], batch["attention_mask"]).shape == (3,)


def test_reward_is_another_name_and_num_labels_reaches_the_head(tiny_model_dir):
    model, _ = martlet.load_model(str(tiny_model_dir), task_type="reward", num_labels=3)
    assert type(model).__name__ == "LlamaForSequenceClassification"
    assert model.score.out_features == 3


def test_without_a_pad_token_the_eos_pads(tiny_model_dir, tmp_path):
    from transformers import AutoTokenizer

    folder = tmp_path / "nopad"
    shutil.copytree(tiny_model_dir, folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.pad_token = None
    tokenizer.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    config["pad_token_id"] = None
    (folder / "config.json").write_text(json.dumps(config))
    model, tokenizer = martlet.load_model(str(folder), task_type="seq_cls")
    assert tokenizer.pad_token_id is None
    assert model.config.pad_token_id == tokenizer.eos_token_id is not None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"task_type": "embedding"}, "unknown task_type 'embedding'"),
        ({"task_type": "seq_cls", "num_labels": 0}, "num_labels must be a positive"),
        ({"num_labels": 2}, "num_labels 2 needs task_type seq_cls"),
    ],
)
def test_bad_task_options_are_config_errors(tiny_model_dir, options, message):
    with pytest.raises(ConfigError) as info:
        martlet.load_model(str(tiny_model_dir), **options)
    assert message in info.value.message()
    if message.startswith("unknown task_type"):
        assert "causal_lm, seq_cls, reward" in info.value.message()


def test_task_options_are_normalised():
    assert normalize_options({"task_type": "Reward", "num_labels": "2"}) == {
        "task_type": "seq_cls",
        "num_labels": 2,
    }
    assert normalize_options({"task_type": "causal-lm"}) == {"task_type": "causal_lm"}


def test_model_options_pass_the_task_only_when_not_the_default():
    def build(*flags):
        return cfg.build(ModelOptions, flags=cfg.parse_flags(ModelOptions, list(flags)).values)

    assert "task_type" not in build("--model", "m").loader_options()
    job = build("--model", "m", "--task-type", "reward")
    assert job.task_type == "seq_cls"
    assert job.loader_options()["task_type"] == "seq_cls" and "num_labels" not in (
        job.loader_options()
    )
    job = build("--model", "m", "--task_type", "seq_cls", "--num-labels", "2")
    assert job.loader_options()["num_labels"] == 2
    with pytest.raises(ConfigError, match="must be one of causal_lm, seq_cls, reward"):
        build("--model", "m", "--task-type", "embedding")
    with pytest.raises(ConfigError, match="needs task_type seq_cls"):
        build("--model", "m", "--num-labels", "2")


def test_the_embedded_gguf_model_loads_with_a_scalar_head(smollm2_tokenizer):
    model, tokenizer = martlet.load_model("smollm2-135m-instruct", task_type="seq_cls")
    assert type(model).__name__ == "LlamaForSequenceClassification"
    assert model.config.pad_token_id is not None
    assert model.config.pad_token_id == (tokenizer.pad_token_id or tokenizer.eos_token_id)
    batch = right_padded(tokenizer, ["Paris is the capital of France.", "Hi"])
    with torch.no_grad():
        scores = sequence_scores(model, batch["input_ids"], batch["attention_mask"])
    assert scores.shape == (2,) and torch.isfinite(scores).all()
