"""Llama-style RMSNorms that keep their input only: the same values as transformers' module,
correct gradients, switched back after the run, and — within an activation budget — outputs
computed again instead of kept, with the very same gradients."""

from __future__ import annotations

import pytest
import torch
from martlet_kernels.lean_mlp import lean_mlps
from martlet_kernels.lean_norm import RMSNormFunction, lean_norms
from martlet_sdk.tiny import tiny_model
from martlet_train.memory import ActivationBudget
from transformers.models.llama.modeling_llama import LlamaRMSNorm


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_values_are_the_modules_exactly(dtype):
    norm = LlamaRMSNorm(24, eps=1e-6)
    norm.weight.data = torch.randn(24).to(dtype)
    x = torch.randn(3, 5, 24).to(dtype)
    assert torch.equal(RMSNormFunction.apply(x, norm.weight, 1e-6), norm(x))


def test_gradients_match_autograd_through_the_modules_operations():
    x = torch.randn(4, 6, 32, requires_grad=True)
    w = torch.randn(32, requires_grad=True)
    g = torch.randn(4, 6, 32)
    norm = LlamaRMSNorm(32, eps=1e-5)
    norm.weight = torch.nn.Parameter(w.detach().clone())
    expected = torch.autograd.grad(norm(x), (x, norm.weight), g)
    got = torch.autograd.grad(RMSNormFunction.apply(x, w, 1e-5), (x, w), g)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def _run(dtype, *, lean: bool, budget: bool):
    import contextlib

    ids = torch.randint(3, 200, (2, 16), generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = tiny_model().to(dtype).train()
    activation = ActivationBudget(model, 10**9) if budget else None
    with contextlib.ExitStack() as stack:
        if lean:
            stack.enter_context(lean_mlps(model))
            stack.enter_context(lean_norms(model))
        saving = activation.saving(model, ids.numel()) if activation else contextlib.nullcontext()
        with saving:
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    return loss.detach(), grads, activation.used if activation else None, model


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_model_gives_the_same_loss_and_gradients_and_is_switched_back(dtype):
    loss, grads, _, _ = _run(dtype, lean=False, budget=False)
    lean_loss, lean_grads, _, model = _run(dtype, lean=True, budget=False)
    tolerance = {"rtol": 1e-4, "atol": 1e-6} if dtype == torch.float32 else {}
    torch.testing.assert_close(lean_loss, loss)
    for name, grad in grads.items():
        if dtype == torch.float32:
            torch.testing.assert_close(lean_grads[name], grad, **tolerance)
        else:  # bf16 rounding of different (equally valid) gradient formulas
            cos = torch.nn.functional.cosine_similarity(
                lean_grads[name].float().flatten(), grad.float().flatten(), dim=0
            )
            assert cos > 0.99, name
    assert all("forward" not in vars(m) for m in model.modules() if isinstance(m, LlamaRMSNorm))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_within_a_budget_norm_and_mlp_outputs_are_recomputed_with_identical_gradients(dtype):
    _, unbudgeted, _, _ = _run(dtype, lean=True, budget=False)
    _, budgeted, lean_saved, _ = _run(dtype, lean=True, budget=True)
    _, _, plain_saved, _ = _run(dtype, lean=False, budget=True)
    for name, grad in unbudgeted.items():
        assert torch.equal(budgeted[name], grad), name
    # each layer keeps neither its norms' outputs nor the down projection's input
    assert lean_saved < 0.8 * plain_saved
