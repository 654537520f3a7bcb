"""Llama-style MLPs that keep gate and up only: the same values and gradients as the model's
own MLP, less kept for the backward pass, and switched back after the run."""

from __future__ import annotations

import pytest
import torch
from martlet_kernels.lean_mlp import SwiGLUFunction, lean_mlps
from martlet_sdk.tiny import tiny_model
from transformers.models.llama.modeling_llama import LlamaMLP


def test_the_function_matches_autograd_and_finite_differences():
    gate = torch.randn(3, 7, dtype=torch.float64, requires_grad=True)
    up = torch.randn(3, 7, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(SwiGLUFunction.apply, (gate, up))
    torch.testing.assert_close(SwiGLUFunction.apply(gate, up), torch.nn.functional.silu(gate) * up)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_a_model_gives_the_same_loss_and_gradients_and_keeps_less(dtype):
    ids = torch.randint(3, 200, (2, 16), generator=torch.Generator().manual_seed(0))

    def run(lean: bool):
        torch.manual_seed(0)
        model = tiny_model().to(dtype).train()
        saved: dict[int, int] = {}

        def pack(t):
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        params = {p.untyped_storage().data_ptr() for p in model.parameters()}
        with lean_mlps(model) if lean else torch.enable_grad():
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
        grads = {n: p.grad.float() for n, p in model.named_parameters()}
        kept = sum(n for ptr, n in saved.items() if ptr not in params)
        return float(loss), grads, kept, model

    loss, grads, kept, _ = run(False)
    lean_loss, lean_grads, lean_kept, model = run(True)
    tolerance = (
        {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 2e-2, "atol": 1e-3}
    )
    assert lean_loss == pytest.approx(loss, rel=tolerance["rtol"])
    for name, grad in grads.items():
        torch.testing.assert_close(lean_grads[name], grad, **tolerance)
    assert lean_kept < kept
    assert all("forward" not in vars(m) for m in model.modules() if isinstance(m, LlamaMLP))


def test_other_mlps_are_left_alone():
    class OtherMLP(LlamaMLP):
        def forward(self, x):
            return self.down_proj(self.gate_proj(x))

    model = tiny_model()
    config = model.config
    other = OtherMLP(config)
    gelu = LlamaMLP(config)
    gelu.act_fn = torch.nn.GELU()
    holder = torch.nn.ModuleList([other, gelu])
    with lean_mlps(holder) as switched:
        assert switched == 0
    with lean_mlps(model) as switched:
        assert switched == config.num_hidden_layers
