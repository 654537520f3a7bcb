"""Attention segment by segment in packed rows: the same logits and gradients as the
block-diagonal 4D mask, every position in exactly one bucket, and a plan recomputed whenever
the segments change."""

from __future__ import annotations

import pytest
import torch
from martlet_kernels import packed_attention
from martlet_kernels.packed_attention import (
    NAME,
    restore_attention,
    segment_plan,
    switched,
    use_packed_attention,
)
from martlet_sdk.tiny import tiny_model

train = pytest.importorskip("martlet_train", reason="martlet-train packs the rows")
from martlet_train.batching import PackedCollator, pack_rows  # noqa: E402

# segments of very different lengths: several buckets, right padding in the shorter rows
LENGTHS = [37, 3, 12, 1, 25, 25, 8, 30, 5, 17, 2, 40]


def packed_batches(length: int = 64, vocab: int = 200):
    """The same packed rows collated twice: with the 4D mask and with position_ids only."""
    generator = torch.Generator().manual_seed(0)
    rows = []
    for n in LENGTHS:
        ids = torch.randint(3, vocab, (n,), generator=generator).tolist()
        rows.append({"input_ids": ids, "labels": ids})
    packed = pack_rows(rows, length)
    masked = PackedCollator(0, mask="4d", dtype=torch.float32)(packed)
    plain = PackedCollator(0, mask="position_ids")(packed)
    for batch in (masked, plain):
        batch.pop("num_tokens")
    return masked, plain


def forward_and_grads(model, batch):
    model.zero_grad(set_to_none=True)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    logits = model(**inputs).logits
    real = batch["labels"] != -100  # padding is a segment of its own: left out
    logits[real].float().sin().sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return logits.detach(), grads


@pytest.mark.parametrize("kv_heads", [2, 4, 1])
def test_segments_give_the_block_diagonal_mask_logits_and_gradients(kv_heads):
    masked, plain = packed_batches()
    assert plain["input_ids"].shape[0] > 1 and "attention_mask" not in plain
    model = tiny_model(num_key_value_heads=kv_heads, attn_implementation="eager").train()
    ref_logits, ref_grads = forward_and_grads(model, masked)

    assert use_packed_attention(model)
    assert model.config._attn_implementation == NAME
    logits, grads = forward_and_grads(model, plain)

    real = plain["labels"] != -100
    torch.testing.assert_close(logits[real], ref_logits[real], rtol=1e-5, atol=1e-5)
    assert grads.keys() == ref_grads.keys() and grads
    for name in grads:
        scale = float(ref_grads[name].abs().max())
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-4, atol=1e-5 * scale)


def test_sdpa_models_switch_and_bf16_stays_close():
    masked, plain = packed_batches()
    model = tiny_model(attn_implementation="sdpa").to(torch.bfloat16)
    with torch.no_grad():
        ref = model(**{k: v for k, v in masked.items() if k != "labels"}).logits.float()
        masked_4d = masked["attention_mask"].to(torch.bfloat16)
        ref_bf16 = model(
            input_ids=masked["input_ids"],
            attention_mask=masked_4d,
            position_ids=masked["position_ids"],
        ).logits.float()
        assert use_packed_attention(model)
        out = model(input_ids=plain["input_ids"], position_ids=plain["position_ids"]).logits
    real = plain["labels"] != -100
    assert torch.isfinite(ref).all()
    error = (out.float() - ref_bf16)[real].abs().max()
    assert error < 0.05 * ref_bf16[real].abs().max()


def test_without_position_ids_each_row_is_one_causal_segment():
    model = tiny_model(attn_implementation="eager")
    ids = torch.randint(3, 200, (2, 9), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model(input_ids=ids).logits
        use_packed_attention(model)
        out = model(input_ids=ids).logits
        # transformers fills in position_ids 0..n-1: one segment per row
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
        direct = packed_attention.packed_attention(
            model.model.layers[0].self_attn,
            *(torch.randn(2, h, 9, 24) for h in (4, 2, 2)),
            None,
        )[0]
    assert direct.shape == (2, 9, 4, 24)


def test_the_plan_covers_every_position_once_in_buckets_of_similar_length():
    position_ids = torch.tensor(
        [list(range(10)) + list(range(3)) + list(range(7)), list(range(16)) + list(range(4))]
    )
    plan = segment_plan(position_ids)
    # segments 16, 10, 7, 4, 3: buckets start at 16 and hold lengths down to 16 / 1.3
    longest = [b[1] for b in plan.buckets]
    assert longest == sorted(longest, reverse=True) and longest[0] == 16
    for count, size, starts, lengths in plan.buckets:
        assert len(starts) == len(lengths) == count
        assert int(lengths.max()) == size and int(lengths.min()) * packed_attention.RATIO >= size
    segments = sorted(
        (int(s), int(s) + int(n))
        for _, _, starts, lengths in plan.buckets
        for s, n in zip(starts, lengths, strict=True)
    )
    assert segments == [(0, 10), (10, 13), (13, 20), (20, 36), (36, 40)]

    heads, kv_heads = 6, 2
    index = plan.indices(heads, kv_heads)
    assert plan.indices(heads, kv_heads) is index  # computed once per head layout
    slots = index.query.numel()
    assert slots == sum(c * heads * n for c, n in index.sizes)
    real = torch.ones(slots, dtype=torch.bool)
    real[index.padding] = False
    # every (position, head) row has exactly one real slot, and the way back finds it
    assert sorted(index.query[real].tolist()) == list(range(40 * heads))
    assert torch.equal(index.query[index.query_back], torch.arange(40 * heads))
    assert bool(real[index.query_back].all())
    assert torch.equal(index.keys[index.key_back], torch.arange(40 * kv_heads))
    # a bucket entry stacks the query heads of one key-value head: rows of one position
    # and the heads kv * group .. kv * group + group - 1, in that order
    count, size = index.sizes[0]
    first = index.query[: heads * size].view(kv_heads, heads // kv_heads, size)
    assert torch.equal(first % heads, torch.arange(heads).view(kv_heads, -1, 1).expand_as(first))
    assert torch.equal(first[0, 0] // heads, torch.arange(20, 36))


def test_padded_slots_get_no_gradient_through_the_gathers():
    """Outputs of padded query slots are dropped, so their gradient is zeroed on the way
    back; a padded key slot is never attended to."""
    position_ids = torch.tensor([[0, 1, 2, 3, 4, 0, 1, 2, 3, 0, 1, 2, 3]])  # 5, 4, 4: one bucket
    index = segment_plan(position_ids).indices(2, 1)
    assert index.sizes == [(3, 5)] and index.padding.numel() == 2 * (1 + 1)
    query = torch.randn(1, 2, 13, 8, requires_grad=True)
    key = torch.randn(1, 1, 13, 8, requires_grad=True)
    value = torch.randn(1, 1, 13, 8, requires_grad=True)
    out, _ = packed_attention.packed_attention(
        None, query, key, value, None, position_ids=position_ids
    )
    weights = torch.randn_like(out)
    (out * weights).sum().backward()
    grads = [t.grad.clone() for t in (query, key, value)]
    # the same attention, each segment on its own
    for t in (query, key, value):
        t.grad = None
    total = 0
    for start, end in ((0, 5), (5, 9), (9, 13)):
        q = query[:, :, start:end]
        k = key[:, :, start:end].expand(-1, 2, -1, -1)
        v = value[:, :, start:end].expand(-1, 2, -1, -1)
        part = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        total = total + (part.transpose(1, 2) * weights[:, start:end]).sum()
    total.backward()
    for got, t in zip(grads, (query, key, value), strict=True):
        torch.testing.assert_close(got, t.grad, rtol=1e-5, atol=1e-6)


def test_a_new_batch_with_the_same_shape_gets_a_new_plan():
    first = torch.tensor([[0, 1, 2, 3, 0, 1, 2, 3]])
    second = torch.tensor([[0, 1, 0, 1, 2, 3, 4, 5]])
    plan_a = segment_plan(first)
    assert segment_plan(first.clone()) is plan_a  # same segments: reused
    plan_b = segment_plan(second)
    assert plan_b is not plan_a
    assert sorted(b[1] for b in plan_b.buckets) == [2, 6]


def test_generation_with_a_cache_and_switching_back():
    model = tiny_model(attn_implementation="eager")
    ids = torch.randint(3, 200, (1, 6), generator=torch.Generator().manual_seed(3))
    options = dict(max_new_tokens=5, do_sample=False, pad_token_id=model.config.pad_token_id)
    with torch.no_grad():
        ref = model.generate(ids, **options)
        assert use_packed_attention(model)
        # the prompt attends causally, each new token (one query, all keys) through sdpa
        torch.testing.assert_close(model.generate(ids, **options), ref)
    restore_attention(model, "eager")
    assert model.config._attn_implementation == "eager"
    restore_attention(model, "sdpa")  # only a switched model is switched back
    assert model.config._attn_implementation == "eager"


def test_switched_holds_for_the_block_only_even_when_it_fails():
    model = tiny_model(attn_implementation="sdpa")
    with pytest.raises(RuntimeError), switched(model) as by_segment:
        assert by_segment and model.config._attn_implementation == NAME
        raise RuntimeError("the run failed")
    assert model.config._attn_implementation == "sdpa"
    model.config._attn_implementation = "flash_attention_2"
    with switched(model) as by_segment:
        assert not by_segment
    assert model.config._attn_implementation == "flash_attention_2"


def test_other_attention_implementations_keep_the_mask():
    model = tiny_model(attn_implementation="eager")
    model.config._attn_implementation = "flash_attention_2"  # reads position_ids itself
    assert not use_packed_attention(model)
    assert model.config._attn_implementation == "flash_attention_2"


def test_packed_lora_training_switches_and_saves_a_plain_config(tmp_path):
    import json

    from martlet_sdk.tiny import tiny_model_dir
    from martlet_train.job import sft

    model_dir = tiny_model_dir(tmp_path / "model")
    out = tmp_path / "run"
    result = sft(
        {
            "model": str(model_dir),
            "dataset": ["sample-sft#24"],
            "tuner": "lora",
            "packing": True,
            "max_length": 256,
            "per_device_train_batch_size": 2,
            "max_steps": 2,
            "learning_rate": 1e-3,
            "attn_impl": "eager",
            "output_dir": str(out),
            "disable_progress_bar": True,
        }
    )
    assert result.global_step == 2
    train = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(torch.isfinite(torch.tensor(m["loss"])) for m in train if "loss" in m)
    saved = json.loads((out / "adapter_config.json").read_text())
    assert saved["peft_type"] == "LORA"
    assert NAME not in (out / "config.yaml").read_text()


def test_a_padding_free_batch_gives_the_padded_batch_loss_and_gradients():
    """--padding-free: a micro-batch's rows as one row, attended segment by segment, train on
    exactly what the padded batch trains on."""
    from martlet_train.batching import PaddingCollator, PaddingFreeCollator
    from martlet_train.losses import causal_lm_loss

    generator = torch.Generator().manual_seed(0)
    rows = []
    for n in LENGTHS[:5]:
        ids = torch.randint(3, 200, (n,), generator=generator).tolist()
        rows.append({"input_ids": ids, "labels": [-100] * (n // 3) + ids[n // 3 :]})
    padded = PaddingCollator(0)(rows)
    free = PaddingFreeCollator(0)(rows)
    assert free["input_ids"].shape == (1, sum(LENGTHS[:5])) and "attention_mask" not in free
    assert int(free["num_tokens"]) == int(padded["num_tokens"])

    def loss_and_grads(model, batch):
        model.zero_grad(set_to_none=True)
        loss_sum, count, _ = causal_lm_loss(model, batch)
        loss_sum.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        return float(loss_sum), int(count), grads

    model = tiny_model(num_key_value_heads=2, attn_implementation="sdpa").train()
    ref_loss, ref_count, ref_grads = loss_and_grads(model, padded)
    with switched(model) as by_segment:
        assert by_segment
        loss, count, grads = loss_and_grads(model, free)
    assert count == ref_count
    assert loss == pytest.approx(ref_loss, rel=1e-5)
    for name, grad in ref_grads.items():
        torch.testing.assert_close(grads[name], grad, rtol=1e-4, atol=1e-5)
