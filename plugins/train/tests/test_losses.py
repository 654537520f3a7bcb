"""The SFT loss computes the output layer only where a target is predicted: the same loss and
gradients as full logits, for padded, packed and prompt-tuned batches."""

from __future__ import annotations

import pytest
import torch
from martlet_peft.options import TunerOptions
from martlet_peft.peft_methods import LoraTuner, PromptTuningTuner
from martlet_sdk.tiny import tiny_model
from martlet_train.losses import IGNORE, causal_lm_loss, logits_only_at


def token_cross_entropy(logits, labels):
    """Summed next-token cross-entropy over full logits, the plain way."""
    shifted = logits[:, :-1].float()
    targets = labels[:, 1:]
    loss = torch.nn.functional.cross_entropy(
        shifted.reshape(-1, shifted.size(-1)),
        targets.reshape(-1),
        ignore_index=IGNORE,
        reduction="sum",
    )
    return loss, (targets != IGNORE).sum()


def full_logits_loss(model, batch):
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    logits = model(**inputs).logits
    logits = logits[:, -batch["labels"].shape[1] :]
    return token_cross_entropy(logits, batch["labels"])


def padded_batch():
    torch.manual_seed(0)
    ids = torch.randint(3, 500, (3, 12))
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    mask[2, 5:] = 0
    labels = ids.clone()
    labels[:, :4] = -100  # prompt
    labels[mask == 0] = -100
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def packed_batch():
    torch.manual_seed(1)
    ids = torch.randint(3, 500, (1, 14))
    position_ids = torch.tensor([[0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5, 6, 7]])
    labels = ids.clone()
    labels[0, [0, 1, 6, 7, 8]] = -100
    return {"input_ids": ids, "position_ids": position_ids, "labels": labels}


def grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("make_batch", [padded_batch, packed_batch])
@pytest.mark.parametrize("tuner", [None, LoraTuner, PromptTuningTuner])
def test_target_only_logits_give_the_full_logits_loss_and_gradients(make_batch, tuner):
    torch.manual_seed(0)
    model = tiny_model()
    if tuner is not None:
        options = TunerOptions(lora_dropout=0.0, num_virtual_tokens=3)
        model = tuner().prepare(model, options)
    model.eval()  # no dropout: both passes see the same network
    batch = make_batch()

    loss, count, _ = causal_lm_loss(model, batch)
    loss.backward()
    fast = grads(model)
    model.zero_grad(set_to_none=True)
    ref_loss, ref_count = full_logits_loss(model, batch)
    ref_loss.backward()
    slow = grads(model)

    assert int(count) == int(ref_count) == int((batch["labels"][:, 1:] != -100).sum())
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-5)
    assert fast.keys() == slow.keys() and fast
    for name in fast:
        torch.testing.assert_close(fast[name], slow[name], rtol=1e-4, atol=1e-6)


def test_only_the_kept_positions_reach_the_output_layer():
    model = tiny_model()
    batch = padded_batch()
    keep = torch.zeros_like(batch["input_ids"], dtype=torch.bool)
    keep[0, 3] = keep[2, 1] = True
    with torch.no_grad(), logits_only_at(model, keep) as selected:
        logits = model(input_ids=batch["input_ids"]).logits
    full = model(input_ids=batch["input_ids"]).logits
    assert selected and logits.shape == (2, model.config.vocab_size)
    torch.testing.assert_close(logits, full[keep])


def test_a_model_without_an_output_layer_getter_keeps_full_logits():
    class Bare(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = tiny_model()

        def forward(self, **kw):
            return self.inner(**kw)

    bare = Bare()
    batch = padded_batch()
    loss, count, _ = causal_lm_loss(bare, batch)
    ref_loss, ref_count = full_logits_loss(bare.inner, batch)
    torch.testing.assert_close(loss, ref_loss)
    assert int(count) == int(ref_count)
