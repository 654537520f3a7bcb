"""Saved activations copied into reusable memory: the same gradients, memory reused from one
forward pass to the next, no confusion between storages, and a clear error on a stale read."""

from __future__ import annotations

import pytest
import torch
from martlet_train.arena import ReusedActivationError, SavedTensorArena


def _hooks(arena: SavedTensorArena):
    return torch.autograd.graph.saved_tensors_hooks(arena.pack, arena.unpack)


def test_gradients_match_plain_autograd_and_the_memory_is_reused():
    torch.manual_seed(0)
    w1, w2 = torch.randn(16, 32, requires_grad=True), torch.randn(32, 8, requires_grad=True)

    def loss(x):
        hidden = torch.nn.functional.silu(x @ w1)
        return (hidden.t()[:, 1:] @ torch.tanh(hidden[1:] @ w2)).square().sum()

    x = torch.randn(24, 16)
    expected = torch.autograd.grad(loss(x), (w1, w2))
    arena = SavedTensorArena(block_bytes=4096)  # small blocks: copies span several
    sizes = []
    for _ in range(3):
        arena.start()
        with _hooks(arena):
            out = loss(x)
        assert arena.saved_bytes > 0
        got = torch.autograd.grad(out, (w1, w2))
        for g, e in zip(got, expected, strict=True):
            torch.testing.assert_close(g, e)
        sizes.append(arena.reserved)
    assert sizes[0] > 0 and sizes[0] == sizes[1] == sizes[2]  # refilled, not grown
    arena.release()
    assert arena.reserved == 0


def test_a_freed_storage_whose_address_is_reused_is_not_confused_with_it():
    """Each temporary is freed as soon as it is copied, so the next one often gets its
    address: it must be copied again, not mistaken for the first."""
    w = torch.ones(4096, requires_grad=True)
    arena = SavedTensorArena()
    arena.start()
    with _hooks(arena):
        total = sum((w * torch.full((4096,), float(i))).sum() for i in range(6))
    total.backward()
    torch.testing.assert_close(w.grad, torch.full((4096,), 15.0))


def test_a_tensor_written_in_place_after_it_was_saved_is_saved_again():
    w = torch.ones(8, requires_grad=True)
    x = torch.arange(8.0)
    arena = SavedTensorArena()
    arena.start()
    with _hooks(arena):
        first = (w * x).sum()
        x.add_(1)
        second = (w * x).sum()
    (first + second).backward()
    torch.testing.assert_close(w.grad, 2 * torch.arange(8.0) + 1)


def test_reading_an_activation_after_the_next_forward_pass_is_a_clear_error():
    w = torch.randn(64, requires_grad=True)
    arena = SavedTensorArena()
    arena.start()
    with _hooks(arena):
        stale = (w * torch.randn(64)).sum()
    arena.start()  # the next micro-batch's forward pass, before this one's backward
    with pytest.raises(ReusedActivationError, match="after a later forward pass") as caught:
        stale.backward()
    assert "--max-activation-memory none" in caught.value.fix


def test_tensors_it_cannot_copy_are_saved_as_they_are_and_still_counted():
    class Tagged(torch.Tensor):
        pass

    arena = SavedTensorArena()
    arena.start()
    tagged = torch.randn(10).as_subclass(Tagged)
    assert arena.pack(tagged) is tagged
    plain = torch.randn(10)
    assert arena.pack(plain) is not plain
    assert arena.saved_bytes == 80


def _declared_product(arena: SavedTensorArena, calls: list[int]):
    """A function that declares its output ``a * b`` derived while ``arena`` is active."""
    from martlet_train.arena import derived

    def product(a, b):
        calls.append(1)
        return a * b

    class Product(torch.autograd.Function):
        @staticmethod
        def forward(ctx, a, b):
            ctx.save_for_backward(a, b)
            return derived(product(a, b), product, a, b)

        @staticmethod
        def backward(ctx, grad):
            a, b = ctx.saved_tensors
            return grad * b, grad * a

    return Product.apply


def test_a_derived_tensor_is_computed_again_once_instead_of_kept():
    torch.manual_seed(0)
    a = torch.randn(64, 32, requires_grad=True)
    b = torch.randn(64, 32, requires_grad=True)
    w1, w2 = torch.randn(32, 8, requires_grad=True), torch.randn(32, 8, requires_grad=True)

    def loss(product):
        p = product(a, b)
        return (p @ w1).square().sum() + (p @ w2).tanh().sum()  # two nodes save p

    arena = SavedTensorArena()
    arena.start()
    with _hooks(arena):
        out = loss(lambda x, y: x * y)
    plain_bytes = arena.saved_bytes
    expected = torch.autograd.grad(out, (a, b, w1, w2))
    calls: list[int] = []
    arena.start()
    with _hooks(arena), arena.active():
        out = loss(_declared_product(arena, calls))
    assert calls == [1]
    # a and b are kept (the product's own gradient needs them), the product is not
    assert arena.saved_bytes == plain_bytes - a.numel() * 4
    got = torch.autograd.grad(out, (a, b, w1, w2))
    assert calls == [1, 1]  # computed again once, for both nodes that saved it
    for g, e in zip(got, expected, strict=True):
        assert torch.equal(g, e)


def test_a_derived_tensor_written_in_place_is_kept_as_written():
    torch.manual_seed(0)
    a, b = torch.randn(16, requires_grad=True), torch.randn(16)
    w = torch.randn(16, requires_grad=True)
    calls: list[int] = []
    arena = SavedTensorArena()
    arena.start()
    with _hooks(arena), arena.active():
        p = _declared_product(arena, calls)(a, b)
        with torch.no_grad():
            p.add_(1.0)  # not what the recipe computes any more
        out = (p * w).sum()
    out.backward()
    torch.testing.assert_close(w.grad, (a * b + 1.0).detach())
    assert calls == [1]  # kept, not recomputed


def test_declarations_outside_an_active_arena_or_in_a_checkpointed_layer_are_ignored():
    from martlet_train.arena import derived

    x = torch.randn(8)
    arena = SavedTensorArena()
    arena.start()
    derived(x * 2, lambda t: t * 2, x)  # no arena active
    assert not arena._derivations
    with arena.active():
        arena.deriving = False  # what the activation budget sets in a checkpointed layer
        derived(x * 2, lambda t: t * 2, x)
        assert not arena._derivations and arena.saved_bytes == 0
        arena.deriving = True
        y = derived(x * 2, lambda t: t * 2, x)
        assert list(arena._derivations) == [y.untyped_storage().data_ptr()]
