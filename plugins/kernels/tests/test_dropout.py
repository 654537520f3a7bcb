"""FastDropout: nn.Dropout's distribution and scaling, masks fixed by torch's seed, identity in
eval mode, and LoRA models get it."""

from __future__ import annotations

import platform

import pytest
import torch
from martlet_kernels.dropout import FastDropout, drop_probability, fast_dropouts, keep_mask
from martlet_sdk.isa import check_built_for_avx2, run_avx2_child, seed_with_the_native_cache
from martlet_sdk.tiny import tiny_model


def test_it_drops_a_fraction_p_and_rescales_the_rest():
    x = torch.ones(400, 500)
    out = FastDropout(0.2).train()(x)
    dropped = (out == 0).float().mean().item()
    assert abs(dropped - 0.2) < 0.01
    kept = out[out != 0]
    torch.testing.assert_close(kept, torch.full_like(kept, 1 / 0.8))
    assert abs(out.mean().item() - 1.0) < 0.02  # unbiased, as nn.Dropout


def test_torch_seed_fixes_the_mask_and_eval_mode_is_the_identity():
    x = torch.randn(8, 16, 32)
    drop = FastDropout(0.3).train()
    torch.manual_seed(5)
    a = drop(x)
    torch.manual_seed(5)
    b = drop(x)
    c = drop(x)
    assert torch.equal(a, b) and not torch.equal(b, c)
    assert drop.eval()(x) is x


def test_gradients_flow_through_the_kept_elements():
    x = torch.randn(6, 10, requires_grad=True)
    out = FastDropout(0.5).train()(x)
    out.sum().backward()
    torch.testing.assert_close(x.grad, (out != 0).float() * 2.0)


def test_bf16_inputs_keep_their_dtype():
    x = torch.randn(4, 8, dtype=torch.bfloat16)
    assert FastDropout(0.1).train()(x).dtype == torch.bfloat16


def _lora(dropout: float):
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=4, lora_dropout=dropout, target_modules="all-linear")
    return get_peft_model(tiny_model(), config)


def dropout_kinds(model) -> set[type]:
    return {type(m) for m in model.modules() if "Dropout" in type(m).__name__}


def test_lora_models_use_it_while_the_kernel_is_applied():
    model = _lora(0.05)
    with fast_dropouts(model) as replaced:
        assert replaced == 14 and dropout_kinds(model) == {FastDropout}
        with fast_dropouts(model) as again:
            assert again == 0  # nothing left to replace
    assert dropout_kinds(model) == {torch.nn.Dropout}  # the model's own back
    plain = _lora(0.0)
    with fast_dropouts(plain) as replaced:
        assert replaced == 0 and FastDropout not in dropout_kinds(plain)


def test_the_mask_drops_p_rounded_to_a_multiple_of_1_over_65536():
    assert drop_probability(0.05) == 3277 / 65536
    assert drop_probability(0.0) == 0.0 and drop_probability(1.0) == 1.0
    for dtype in (torch.float32, torch.bfloat16):
        mask = keep_mask((300, 1000), 0.05, "cpu", dtype)
        assert mask.dtype == dtype and mask.shape == (300, 1000)
        assert set(mask.unique().tolist()) == {0.0, 1.0}
        assert abs(1 - mask.float().mean().item() - 0.05) < 0.003
    assert FastDropout(1.0).train()(torch.ones(3, 4)).abs().sum() == 0


def test_numba_and_numpy_draw_the_same_bits(monkeypatch):
    import numpy as np
    import pytest
    from martlet_kernels import dropout

    pytest.importorskip("numba")
    assert dropout._kernel() is not None  # numba is a dependency: the fast loop is used
    for size, seed in [(1, 7), (5, 2**61 + 3), (4096 * 3 + 2, 123)]:
        fast = dropout._mask_bits(size, seed, 3277).copy()
        monkeypatch.setattr(dropout, "_kernel", lambda: None)
        slow = dropout._mask_bits(size, seed, 3277)
        monkeypatch.undo()
        assert fast.dtype == np.uint16 and fast.shape == (size,)
        np.testing.assert_array_equal(fast, slow)
    # SplitMix64's first output for state 0 + golden (its reference value), lane by lane
    word = dropout._mask_bits(4, 0, 0).view(np.uint64)[0]
    assert word == 0x3F803F803F803F80  # threshold 0 keeps everything
    reference = 0xE220A8397B1DCDAF  # SplitMix64(seed 0), first output
    lanes = [(reference >> (16 * k)) & 0xFFFF for k in range(4)]
    limit = sorted(lanes)[2]  # drops the two smallest lanes
    bits = dropout._mask_bits(4, 0, limit)
    assert [int(b) for b in bits] == [0x3F80 if lane >= limit else 0 for lane in lanes]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("shape", [(64, 96), (3, 5, 4), (7, 3)])
def test_a_drop_mask_clears_what_keep_mask_drops_without_storing_a_mask(shape, monkeypatch, dtype):
    from martlet_kernels import dropout
    from martlet_kernels.dropout import DropMask

    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(dtype) + 5
    torch.manual_seed(11)
    keep = keep_mask(shape, 0.3, "cpu", dtype)
    torch.manual_seed(11)  # the same seed from torch's generator: the same elements
    mask = DropMask(shape, 0.3, "cpu", dtype)
    assert torch.equal(mask.keep(), keep)
    dropped = mask.dropped(x)
    assert dropped.dtype == dtype and torch.equal(dropped, x * keep)
    assert x.numel() < 100 or 0.2 < float((dropped == 0).float().mean()) < 0.4
    inplace = x.clone()
    assert mask.zero_dropped_(inplace) is inplace and torch.equal(inplace, dropped)
    # without numba (or for other dtypes) the mask is multiplied in: the same values
    monkeypatch.setattr(dropout, "_and_kernel", lambda dtype=None: None)
    assert torch.equal(mask.dropped(x), dropped)
    assert torch.equal(mask.zero_dropped_(x.clone()), dropped)
    assert torch.equal(mask.dropped(x.double()), dropped.double())


def test_the_compiled_pass_is_used_only_on_aligned_bfloat16_and_float32_storage():
    from martlet_kernels.dropout import DropMask

    pytest.importorskip("numba")
    mask = DropMask((4, 8), 0.5, "cpu", torch.bfloat16)
    x = torch.randn(4, 9).to(torch.bfloat16)
    assert mask._words(torch.zeros(4, 8, dtype=torch.bfloat16)) is not None
    assert mask._words(x[:, 1:]) is None  # not contiguous
    assert mask._words(torch.zeros(33, dtype=torch.bfloat16)[1:]) is None  # misaligned
    assert mask._words(torch.zeros(4, 8)) is not None  # float32: two values per word
    assert mask._words(torch.zeros(4, 8, dtype=torch.float64)) is None
    flat = torch.randn(33).to(torch.bfloat16)[1:]  # 32 values at an odd offset: multiplied
    assert torch.equal(mask.dropped(flat.view(4, 8)), flat.view(4, 8) * mask.keep())


# -- the kernels compiled for an AVX2-only CPU ---------------------------------------------------


def mask_kernels():
    from martlet_kernels import _mask_kernel

    return (
        _mask_kernel.fill_mask_words,
        _mask_kernel.and_mask_words,
        _mask_kernel.and_mask_words_inplace,
        _mask_kernel.and_mask_words32,
        _mask_kernel.and_mask_words32_inplace,
    )


def check_the_avx2_build() -> None:
    """Run by :func:`test_the_kernels_built_for_an_avx2_cpu_draw_and_clear_the_same_bits` in
    a subprocess under :data:`martlet_sdk.isa.AVX2_ENV`: the mask bits of NumPy's fallback,
    and the dropped lanes of bfloat16 words cleared as the mask says, in place and into a
    copy."""
    import numpy as np
    from martlet_kernels import dropout

    kernels = mask_kernels()
    fill, clear, clear_inplace, clear32, clear32_inplace = kernels
    seed_with_the_native_cache(kernels)
    with pytest.MonkeyPatch.context() as monkeypatch:
        test_numba_and_numpy_draw_the_same_bits(monkeypatch)
    for shape in [(64, 96), (3, 5, 4), (7, 3)]:
        for dtype in (torch.bfloat16, torch.float32):
            with pytest.MonkeyPatch.context() as monkeypatch:
                test_a_drop_mask_clears_what_keep_mask_drops_without_storing_a_mask(
                    shape, monkeypatch, dtype
                )
    # the kernels against NumPy: vector loops and their remainders, every threshold's edge
    values = np.random.default_rng(0).integers(0, 2**16, 4 * 1029, dtype=np.uint16)
    for words in (1, 3, 17, 1029):
        src = values[: 4 * words].view(np.uint64)
        for seed in (0, 123, 2**61 + 3, 2**62 - 1):
            for threshold in (0, 1, 3277, 32768, 65535, 65536):
                expected = np.empty(words, np.uint64)
                dropout._numpy_words(expected, seed, threshold)
                bits = np.empty(words, np.uint64)
                fill(bits, seed, threshold)
                np.testing.assert_array_equal(bits, expected)
                kept = np.where(expected.view(np.uint16) != 0, values[: 4 * words], 0)
                out = np.empty_like(src)
                clear(src, out, seed, threshold)
                np.testing.assert_array_equal(out.view(np.uint16), kept)
                inplace = src.copy()
                clear_inplace(inplace, seed, threshold)
                np.testing.assert_array_equal(inplace.view(np.uint16), kept)
                # float32: two values per word, four per mask word
                wide = np.random.default_rng(words).integers(0, 2**32, 4 * words, np.uint32)
                kept32 = np.where(expected.view(np.uint16) != 0, wide, 0)
                out32 = np.empty(2 * words, np.uint64)
                clear32(wide.view(np.uint64), out32, seed, threshold)
                np.testing.assert_array_equal(out32.view(np.uint32), kept32)
                inplace32 = wide.view(np.uint64).copy()
                clear32_inplace(inplace32, seed, threshold)
                np.testing.assert_array_equal(inplace32.view(np.uint32), kept32)
    check_built_for_avx2(kernels)


@pytest.mark.slow
@pytest.mark.skipif(
    platform.machine().lower() not in ("x86_64", "amd64"), reason="an x86-64 CPU model"
)
def test_the_kernels_built_for_an_avx2_cpu_draw_and_clear_the_same_bits(tmp_path):
    pytest.importorskip("numba")
    import llvmlite.binding as llvm
    from martlet_kernels import dropout

    features = llvm.get_host_cpu_features()
    if not (features.get("avx2") and features.get("fma")):
        pytest.skip("this CPU cannot run Haswell's instructions")
    dropout.warm_up()  # the native build, on disk for the child's cross-CPU check
    run_avx2_child(__file__, tmp_path, mask_kernels())
