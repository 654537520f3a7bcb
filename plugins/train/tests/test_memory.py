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


def _budget_grads(limit: int | None, lengths: list[int]) -> tuple[dict, list[int], list[int]]:
    """Gradients of LoRA (with dropout) on batches of ``lengths`` tokens, each forward pass
    inside an activation budget of ``limit`` bytes (None: no budget); the bytes each batch
    saved and the layers it recomputed."""
    torch.manual_seed(0)
    model = tiny_model()
    budget = memory.ActivationBudget(model, limit) if limit is not None else None
    model = LoraTuner().prepare(model, TunerOptions(lora_dropout=0.3, init_weights="gaussian"))
    model.train()
    saved, recomputed = [], []
    for n in lengths:
        ids = torch.randint(3, 500, (1, n))
        torch.manual_seed(n)
        if budget is None:
            model(input_ids=ids, labels=ids).loss.backward()
            continue
        with budget.saving(model, n):
            loss = model(input_ids=ids, labels=ids).loss
        saved.append(budget.used)
        recomputed.append(budget.checkpointed)
        loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    return grads, saved, recomputed


def test_an_activation_budget_recomputes_only_what_a_batch_needs_and_keeps_the_gradients():
    lengths = [8, 64, 8]
    plain, _, _ = _budget_grads(None, lengths)
    roomy, roomy_saved, roomy_recomputed = _budget_grads(10**9, lengths)
    assert roomy_recomputed == [0, 0, 0]  # everything fits: no layer is recomputed
    # room for the short batches only: the long one recomputes layers, the short ones none
    limit = int(roomy_saved[0] * 1.5)
    tight, tight_saved, tight_recomputed = _budget_grads(limit, lengths)
    assert tight_recomputed[0] == 0 and tight_recomputed[2] == 0
    assert tight_recomputed[1] > 0
    assert tight_saved[1] < roomy_saved[1]
    for grads in (roomy, tight):
        assert grads.keys() == plain.keys() and plain
        for name in plain:
            torch.testing.assert_close(grads[name], plain[name], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    ("text", "size"), [("512MB", 512 * 10**6), ("1.5GiB", int(1.5 * 2**30)), ("1000", 1000)]
)
def test_sizes_read_in_decimal_and_binary_units(text, size):
    assert memory.parse_size(text) == size


def test_a_bad_size_is_a_clear_error():
    from martlet.errors import ConfigError

    with pytest.raises(ConfigError, match="cannot read '12 parsecs' as a size"):
        memory.parse_size("12 parsecs")
