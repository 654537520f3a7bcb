"""Activation checkpointing (full and selective) gives the same gradients as none, also with
LoRA's dropout, whose masks must be redrawn identically when the forward pass is replayed."""

from __future__ import annotations

import pytest
import torch
from martlet_peft.options import TunerOptions
from martlet_peft.peft_methods import LoraTuner
from martlet_sdk.tiny import tiny_model
from martlet_train import memory


@pytest.mark.parametrize("selective", [False, True])
def test_recomputation_in_the_backward_pass_redraws_the_same_masks(selective):
    """Activation checkpointing replays the forward with torch's RNG state restored: the
    NumPy masks, seeded from it, must come out the same (or the gradients would be wrong)."""

    def grads(checkpointing: bool) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        model = tiny_model()
        if checkpointing:
            memory.enable(model, selective=selective)
        model = LoraTuner().prepare(model, TunerOptions(lora_dropout=0.3, init_weights="gaussian"))
        model.train()
        ids = torch.randint(3, 500, (2, 12))
        torch.manual_seed(1)
        model(input_ids=ids, labels=ids).loss.backward()
        return {n: p.grad for n, p in model.named_parameters() if p.grad is not None}

    plain, replayed = grads(False), grads(True)
    assert plain.keys() == replayed.keys() and plain
    for name in plain:
        torch.testing.assert_close(plain[name], replayed[name], rtol=1e-4, atol=1e-6)
