"""Fused LoRA layers compute what PEFT's modules compute: the same outputs, the same gradients
(dropout masks included), the same behaviour when adapters are disabled, merged, saved and
reloaded, and they keep less for the backward pass."""

from __future__ import annotations

import contextlib

import pytest
import torch
from martlet.kernels import applied
from martlet_kernels.dropout import DropMask
from martlet_kernels.fused_lora import LoraLinearFunction, fused_lora
from martlet_sdk.tiny import tiny_model
from peft import LoraConfig, get_peft_model


def lora(fused: bool, dropout: float = 0.3, dtype: torch.dtype = torch.float32, **options):
    """A PEFT LoRA model of the tiny model (every linear layer adapted) with the
    ``lora-dropout`` kernel, and ``fused-lora`` too where ``fused``, applied for the model's
    lifetime."""
    model = tiny_model(seed=3).to(dtype)
    torch.manual_seed(0)  # the same adapter initialisation for both
    config = LoraConfig(
        r=8,
        lora_alpha=32,
        lora_dropout=dropout,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
        **options,
    )
    model = get_peft_model(model, config)
    kernels = "lora-dropout,fused-lora" if fused else "lora-dropout"
    model.test_kernels = contextlib.ExitStack()
    model.test_kernels.enter_context(applied(model, kernels, device="cpu", dtype="float32"))
    noise = torch.Generator().manual_seed(1)
    with torch.no_grad():  # B starts at zero: give every adapter an effect on the output
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.add_(0.1 * torch.randn(p.shape, generator=noise).to(p.dtype))
    return model


def ids(seed: int = 1) -> torch.Tensor:
    return torch.randint(3, 500, (3, 14), generator=torch.Generator().manual_seed(seed))


def step(model, batch: torch.Tensor, seed: int = 7):
    """Loss and gradients (adapter weights and input embeddings) of one training forward."""
    model.train()
    embeds = model.get_input_embeddings()(batch).detach().requires_grad_(True)
    torch.manual_seed(seed)  # fixes the dropout masks
    loss = model(inputs_embeds=embeds, labels=batch).loss
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), grads, embeds.grad


def test_plain_lora_layers_are_fused_while_the_kernel_is_applied():
    fused, plain = lora(True), lora(False)
    assert sum("forward" in vars(m) for m in fused.modules()) == 14  # 7 per layer, 2 layers
    assert not any("forward" in vars(m) for m in plain.modules())
    with fused_lora(plain) as count:
        assert count == 14
    assert not any("forward" in vars(m) for m in plain.modules())  # PEFT's forward again
    fused.test_kernels.close()
    assert not any("forward" in vars(m) for m in fused.modules())


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_training_step_matches_peft_with_the_same_dropout_masks(dropout):
    batch = ids()
    loss_f, grads_f, input_f = step(lora(True, dropout), batch)
    loss_p, grads_p, input_p = step(lora(False, dropout), batch)
    torch.testing.assert_close(loss_f, loss_p, rtol=1e-6, atol=1e-6)
    assert grads_f.keys() == grads_p.keys() and len(grads_f) == 28  # A and B of 14 layers
    for name in grads_f:
        torch.testing.assert_close(grads_f[name], grads_p[name], rtol=1e-4, atol=1e-6)
    # fp32 sums in another order: differences of ~1e-6 of the largest input gradient
    scale = float(input_p.abs().max())
    torch.testing.assert_close(input_f, input_p, rtol=1e-4, atol=1e-5 * scale)


def test_dropout_really_changes_the_step_and_the_seed_fixes_it():
    model, batch = lora(True, 0.3), ids()
    a, _, _ = step(model, batch, seed=7)
    b, _, _ = step(model, batch, seed=7)
    c, _, _ = step(model, batch, seed=8)
    assert torch.equal(a, b) and not torch.equal(a, c)
    model.eval()
    with torch.no_grad():  # no dropout in eval mode: deterministic, equal to PEFT's
        plain = lora(False, 0.3).eval()
        torch.testing.assert_close(model(batch).logits, plain(batch).logits)


def test_bf16_autocast_and_bf16_weights_agree_with_peft():
    batch = ids()
    for dtype in (torch.float32, torch.bfloat16):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss_f, grads_f, _ = step(lora(True, 0.1, dtype), batch)
            loss_p, grads_p, _ = step(lora(False, 0.1, dtype), batch)
        assert abs(loss_f.item() - loss_p.item()) < 2e-2 * abs(loss_p.item())
        for name in grads_f:
            assert grads_f[name].dtype == grads_p[name].dtype  # the adapters' own dtype
            cos = torch.nn.functional.cosine_similarity(
                grads_f[name].flatten().float(), grads_p[name].flatten().float(), dim=0
            )
            assert cos > 0.99, name


def test_disable_merge_save_and_reload_behave_as_with_peft(tmp_path):
    model, batch = lora(True, 0.1), ids()
    step(model, batch)
    model.eval()
    base = tiny_model(seed=3).eval()
    with torch.no_grad():
        tuned = model(batch).logits
        with model.disable_adapter():
            torch.testing.assert_close(model(batch).logits, base(batch).logits)
        assert not torch.allclose(tuned, base(batch).logits, atol=1e-3)
        model.save_pretrained(tmp_path)
        from peft import PeftModel

        reloaded = PeftModel.from_pretrained(tiny_model(seed=3), tmp_path).eval()
        torch.testing.assert_close(reloaded(batch).logits, tuned, rtol=1e-5, atol=1e-5)
        merged = model.merge_and_unload()
        torch.testing.assert_close(merged(batch).logits, tuned, rtol=1e-4, atol=1e-4)


def test_a_base_weight_made_trainable_goes_back_to_peft_s_forward():
    model, batch = lora(True, 0.0), ids()
    weight = model.base_model.model.model.layers[0].self_attn.q_proj.base_layer.weight
    weight.requires_grad_(True)
    step(model, batch)
    assert weight.grad is not None and weight.grad.abs().sum() > 0


def test_zero3_partitioned_weights_go_back_to_peft_s_forward(monkeypatch):
    """DeepSpeed ZeRO-3 marks its partitioned parameters with ``ds_id`` and gathers them in the
    owning module's forward hooks: such a layer must call its base layer."""
    model, batch = lora(True, 0.0), ids()
    calls = []
    monkeypatch.setattr(LoraLinearFunction, "apply", lambda *a: calls.append(a) or None)
    q_proj = model.base_model.model.model.layers[0].self_attn.q_proj
    for module in model.modules():
        if "forward" in vars(module):
            module.base_layer.weight.ds_id = 0
    seen = []
    q_proj.base_layer.register_forward_hook(lambda *a: seen.append(1))
    model.eval()
    with torch.no_grad():
        model(batch)
    assert not calls and seen == [1]


def test_dora_layers_keep_peft_s_own_forward():
    batch = ids()
    loss_f, grads_f, _ = step(lora(True, 0.0, use_dora=True), batch)
    loss_p, grads_p, _ = step(lora(False, 0.0, use_dora=True), batch)
    torch.testing.assert_close(loss_f, loss_p)
    for name in grads_f:
        torch.testing.assert_close(grads_f[name], grads_p[name])


def saved_bytes(model, batch: torch.Tensor, autocast: bool = True) -> int:
    """Bytes the backward pass keeps: each saved storage counted once (a layer input that
    several layers save is one tensor in memory)."""
    storages: dict[int, int] = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    model.train()
    torch.manual_seed(0)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
    return sum(storages.values())


def test_dropout_keeps_no_copy_of_the_input_in_float32():
    """The layers reading one input (q, k, v; gate, up) keep that input once and redraw their
    dropped-out copies in the backward pass: dropout costs no activation memory."""
    batch = torch.randint(3, 500, (4, 64), generator=torch.Generator().manual_seed(0))
    with_dropout = saved_bytes(lora(True, 0.1), batch, autocast=False)
    without = saved_bytes(lora(True, 0.0), batch, autocast=False)
    assert with_dropout == without


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_backward_pass_keeps_less(dtype):
    batch = torch.randint(3, 500, (4, 64), generator=torch.Generator().manual_seed(0))
    fused = saved_bytes(lora(True, 0.1, dtype), batch)
    plain = saved_bytes(lora(False, 0.1, dtype), batch)
    assert fused < 0.85 * plain, (fused, plain)


def test_function_gradients_against_finite_differences():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 5, dtype=torch.float64)
    bias = torch.randn(4, dtype=torch.float64, requires_grad=True)
    a = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, 2, dtype=torch.float64, requires_grad=True)
    for mask in (None, DropMask((2, 3, 5), 0.3, "cpu", torch.float64)):
        torch.autograd.gradcheck(
            lambda x, bias, a, b, mask=mask: LoraLinearFunction.apply(
                x, w, bias, a, b, 1.7, mask, torch.float64
            ),
            (x, bias, a, b),
        )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no cuda device")
def test_on_cuda_a_step_matches_peft_and_dropout_masks_are_drawn_on_the_device():
    batch = ids().cuda()
    loss_f, grads_f, input_f = step(lora(True, 0.0).cuda(), batch)
    loss_p, grads_p, input_p = step(lora(False, 0.0).cuda(), batch)
    torch.testing.assert_close(loss_f, loss_p, rtol=1e-4, atol=1e-5)
    for name in grads_f:
        torch.testing.assert_close(grads_f[name], grads_p[name], rtol=1e-3, atol=1e-5)
    model = lora(True, 0.3).cuda()
    a, _, _ = step(model, batch, seed=7)
    b, _, _ = step(model, batch, seed=7)
    c, _, _ = step(model, batch, seed=8)
    assert torch.equal(a, b) and not torch.equal(a, c)
