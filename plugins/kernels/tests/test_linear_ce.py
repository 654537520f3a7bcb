"""The fused output layer + cross-entropy: the plain loss and gradients (hidden states, weight,
bias), under bf16 autocast too, exact where a target's probability underflows, and used by the
SFT loss only for models whose output layer's result is the logits."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from martlet.kernels import applied, provided
from martlet_kernels import linear_ce
from martlet_kernels.linear_ce import fusable_head, linear_cross_entropy
from martlet_sdk.tiny import tiny_model


def plain(hidden, weight, bias, targets):
    return F.cross_entropy(F.linear(hidden, weight, bias).float(), targets, reduction="sum")


def grads_of(fn, *tensors):
    for t in tensors:
        t.grad = None
    loss = fn()
    (loss * 0.5).backward()  # a scaled upstream gradient, as the loop divides by the count
    return loss.detach(), [t.grad.clone() for t in tensors]


@pytest.mark.parametrize("with_bias", [False, True])
def test_loss_and_all_gradients_match_the_plain_cross_entropy(with_bias, monkeypatch):
    monkeypatch.setattr(linear_ce, "MIN_ROWS", 16)  # several chunks of 16 rows, a short tail
    monkeypatch.setattr(linear_ce, "CHUNK_BYTES", 1)
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(53, 24, generator=generator, requires_grad=True)
    weight = torch.randn(300, 24, generator=generator, requires_grad=True)
    bias = torch.randn(300, generator=generator, requires_grad=True) if with_bias else None
    targets = torch.randint(0, 300, (53,), generator=generator)
    tensors = [hidden, weight] + ([bias] if with_bias else [])

    ref, ref_grads = grads_of(lambda: plain(hidden, weight, bias, targets), *tensors)
    out, out_grads = grads_of(lambda: linear_cross_entropy(hidden, weight, bias, targets), *tensors)

    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-4)
    for got, want in zip(out_grads, ref_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_bf16_autocast_with_a_frozen_weight_matches_autocast():
    generator = torch.Generator().manual_seed(1)
    hidden = torch.randn(40, 32, generator=generator).bfloat16().requires_grad_(True)
    weight = torch.randn(500, 32, generator=generator).bfloat16()
    targets = torch.randint(0, 500, (40,), generator=generator)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref, (ref_grad,) = grads_of(lambda: plain(hidden, weight, None, targets), hidden)
        out, (grad,) = grads_of(lambda: linear_cross_entropy(hidden, weight, None, targets), hidden)
    assert out.dtype == torch.float32 and grad.dtype == torch.bfloat16
    torch.testing.assert_close(out, ref, rtol=1e-3, atol=1e-2)
    torch.testing.assert_close(grad.float(), ref_grad.float(), rtol=0.02, atol=1e-3)


def test_a_target_whose_probability_underflows_gets_its_exact_loss():
    hidden = torch.tensor([[100.0, 0.0], [0.0, 1.0]], requires_grad=True)
    weight = torch.tensor([[10.0, 0.0], [-10.0, 0.0], [0.0, 0.0]])
    targets = torch.tensor([1, 0])  # row 0: p = exp(-2000) is 0 in fp32
    out = linear_cross_entropy(hidden, weight, None, targets)
    assert torch.isfinite(out)
    torch.testing.assert_close(out, plain(hidden, weight, None, targets))


def test_no_gradient_mode_gives_the_loss_only():
    hidden = torch.randn(5, 8, requires_grad=True)
    weight = torch.randn(20, 8, requires_grad=True)
    targets = torch.randint(0, 20, (5,))
    with torch.no_grad():
        out = linear_cross_entropy(hidden, weight, None, targets)
    assert not out.requires_grad
    torch.testing.assert_close(out, plain(hidden, weight, None, targets).detach())


def test_the_kernel_offers_the_loss_only_for_a_plain_output_layer():
    model = tiny_model()
    assert fusable_head(model) is model.lm_head
    with applied(model, "linear-cross-entropy", device="cpu", dtype="float32") as used:
        assert used == {"linear-cross-entropy": 1}
        assert provided(model, "output_cross_entropy") is not None
    assert provided(model, "output_cross_entropy") is None  # only while applied
    model.config.model_type = "gemma2"  # soft-caps its logits after the output layer
    assert fusable_head(model) is None
    with applied(model, "linear-cross-entropy", device="cpu", dtype="float32") as used:
        assert used == {"linear-cross-entropy": 0}
        assert provided(model, "output_cross_entropy") is None


def test_the_sft_loss_takes_the_offered_operation_with_the_same_value():
    train = pytest.importorskip("martlet_train.losses", reason="martlet-train has the sft loss")
    model = tiny_model()
    ids = torch.randint(3, 200, (2, 9), generator=torch.Generator().manual_seed(2))
    labels = ids.clone()
    labels[:, :4] = -100
    batch = {"input_ids": ids, "labels": labels}
    calls = []
    with applied(model, "linear-cross-entropy", device="cpu", dtype="float32"):
        offered = provided(model, "output_cross_entropy")
        with pytest.MonkeyPatch.context() as patch:
            function = linear_ce.LinearCrossEntropy
            patch.setattr(function, "apply", _counting(calls, function.apply))
            fused, count, _ = train.causal_lm_loss(model, batch)
        assert offered is not None and calls
    unfused, count2, _ = train.causal_lm_loss(model, batch)
    assert int(count) == int(count2) == 10
    torch.testing.assert_close(fused, unfused, rtol=1e-5, atol=1e-5)
    # the output layer is whole again after the fused pass
    assert "forward" not in vars(model.lm_head)
    assert model(input_ids=ids).logits.shape == (2, 9, model.config.vocab_size)


def _counting(calls, fn):
    def counted(*args):
        calls.append(1)
        return fn(*args)

    return counted
