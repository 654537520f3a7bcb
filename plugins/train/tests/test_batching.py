"""Encoding rows through a chat template, packing, and the collators; packed batches give the
same loss as the same rows unpacked (tiny Llama, fp32)."""

from __future__ import annotations

import martlet
import pytest
from martlet.errors import ConfigError, MartletError
from martlet.examples import encode_rows
from martlet_train.batching import (
    PackedCollator,
    PaddingCollator,
    block_diagonal_mask,
    pack_rows,
    plan_bins,
)

torch = pytest.importorskip("torch")
IGNORE = -100


@pytest.fixture
def template_for(martlet_manager):
    """``template_for(tokenizer, **options)``: martlet-hf's chat template for a tokenizer."""
    pytest.importorskip("martlet_hf", reason="martlet-hf provides the chat templates")
    martlet_manager("data", "hf")

    def make(tokenizer, **options):
        return martlet.load_template(tokenizer, **options)

    return make


@pytest.fixture
def encoded(template_for, tiny_tokenizer):
    rows = martlet.load_dataset("sample-sft#24")
    return encode_rows(rows, template_for(tiny_tokenizer))


# ------------------------------------------------------------------------ encode_rows


def test_encode_rows_labels_only_assistant_tokens(encoded, tiny_tokenizer):
    assert len(encoded) == 24 and encoded.stats.encoded == 24
    assert encoded.stats.truncated == 0 and not encoded.stats.deleted
    for row in encoded:
        assert set(row) == {"input_ids", "attention_mask", "labels"}
        assert len(row["input_ids"]) == len(row["labels"]) == len(row["attention_mask"])
        labelled = [
            t for t, lab in zip(row["input_ids"], row["labels"], strict=True) if lab != IGNORE
        ]
        text = tiny_tokenizer.decode(labelled)
        assert "<|im_start|>" not in text and text.endswith("<|im_end|>")


def test_encode_rows_counts_truncated_and_deleted_rows(template_for, tiny_tokenizer, caplog):
    rows = martlet.load_dataset("sample-sft#30")
    right = template_for(tiny_tokenizer, max_length=48, truncation="left")
    with caplog.at_level("WARNING", logger="martlet.data"):
        out = encode_rows(rows, right)
    stats = out.stats
    assert stats.truncated > 0 and stats.truncated_tokens > 0
    assert all(len(r["input_ids"]) <= 48 for r in out)
    assert stats.encoded + stats.deleted_rows == 30
    assert "truncated" in caplog.text
    deleting = template_for(tiny_tokenizer, max_length=48, truncation="delete")
    out = encode_rows(rows, deleting)
    assert out.stats.deleted["longer than max_length"] > 0 and out.stats.truncated == 0
    # cut from the right, the answers go: rows with nothing left to learn are deleted
    cut = encode_rows(rows, template_for(tiny_tokenizer, max_length=20, truncation="right"))
    assert cut.stats.deleted["no target tokens"] > 0
    assert "no target tokens" in cut.stats.summary()


def test_encode_rows_max_length_is_a_safety_net(template_for, tiny_tokenizer):
    rows = martlet.load_dataset("sample-sft#10")
    out = encode_rows(rows, template_for(tiny_tokenizer), max_length=40)
    assert out.stats.deleted["longer than max_length"] > 0
    assert all(len(r["input_ids"]) <= 40 for r in out)


def test_encode_preference_kto_and_text_rows(template_for, tiny_tokenizer):
    template = template_for(tiny_tokenizer)
    pref = encode_rows(martlet.load_dataset("sample-dpo#4"), template)
    for row in pref:
        assert {"rejected_input_ids", "rejected_attention_mask", "rejected_labels"} <= set(row)
        assert row["input_ids"] != row["rejected_input_ids"]
    kto = encode_rows(martlet.load_dataset("sample-kto#6"), template)
    assert all(isinstance(r["label"], bool) for r in kto)
    text = encode_rows(martlet.load_dataset("sample-pt#5"), template, max_length=16)
    for row in text:
        assert row["labels"] == row["input_ids"] and len(row["input_ids"]) <= 16
    assert text.stats.truncated > 0


ALTERNATING = (
    "{% for m in messages %}"
    "{% if (m['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant') }}"
    "{% endif %}<|{{ m['role'] }}|>{{ m['content'] }}</s>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def test_a_row_the_template_refuses_is_named_or_skipped(template_for, tiny_tokenizer):
    """A chat template that refuses a conversation (here, as Llama 2's and Mistral's do, two
    user turns in a row) stops the encoding naming the row, or leaves it out with skip."""
    tiny_tokenizer.chat_template = ALTERNATING
    template = template_for(tiny_tokenizer)
    good = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
    bad = {
        "messages": [
            {"role": "user", "content": "first question"},
            {"role": "user", "content": "second"},
            {"role": "assistant", "content": "answer"},
        ]
    }
    with pytest.raises(MartletError) as caught:
        encode_rows([good, bad, good], template)
    message = str(caught.value)
    assert "row 2 of the training data cannot be encoded" in message
    assert "roles must alternate" in message and "'first question'" in message
    assert "--on-bad-rows skip" in message
    result = encode_rows([good, bad, good], template, on_bad_rows="skip")
    assert len(list(result)) == 2
    assert result.stats.deleted["the template cannot render it"] == 1


def test_text_rows_need_a_tokenizer():
    class NoTokenizer:
        def encode(self, messages):
            return None

    with pytest.raises(ConfigError, match="no tokenizer"):
        encode_rows([{"text": "x"}], NoTokenizer())


def test_a_template_returning_none_deletes_the_row():
    class Deleting:
        def encode(self, messages):
            return None if len(messages[0]["content"]) > 3 else {
                "input_ids": [1, 2], "attention_mask": [1, 1], "labels": [-100, 2]}  # fmt: skip

    rows = [{"messages": [{"role": "user", "content": c}, {"role": "assistant", "content": "a"}]}
            for c in ("abc", "abcdef")]  # fmt: skip
    out = encode_rows(rows, Deleting())
    assert len(out) == 1 and out.stats.deleted == {"longer than max_length": 1}


# ------------------------------------------------------------------------ packing


def test_plan_bins_is_tight_and_complete():
    lengths = [7, 3, 5, 5, 2, 8, 1, 4]
    bins = plan_bins(lengths, 10)
    assert sorted(i for b in bins for i in b) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in b) <= 10 for b in bins)
    assert len(bins) == 4  # 35 tokens in 10-token bins: the best possible
    assert plan_bins(lengths, 10) == bins  # deterministic
    assert plan_bins([], 10) == []


def test_plan_bins_refuses_a_row_longer_than_the_bin():
    with pytest.raises(ConfigError, match="row 1 has 12 tokens, more than the packing length 10"):
        plan_bins([3, 12], 10)
    with pytest.raises(ConfigError):
        plan_bins([1], 0)


def test_pack_rows_restarts_positions_and_masks_each_first_label(encoded):
    packed = pack_rows(encoded, 256)
    assert sum(len(p["seq_lens"]) for p in packed) == len(encoded)
    assert len(packed) < len(encoded)
    for p in packed:
        assert len(p["input_ids"]) == len(p["labels"]) == len(p["position_ids"]) <= 256
        start = 0
        for n in p["seq_lens"]:
            assert p["position_ids"][start : start + n] == list(range(n))
            assert p["labels"][start] == IGNORE
            start += n
    all_ids = sorted(tuple(r["input_ids"]) for r in encoded)
    unpacked = []
    for p in packed:
        start = 0
        for n in p["seq_lens"]:
            unpacked.append(tuple(p["input_ids"][start : start + n]))
            start += n
    assert sorted(unpacked) == all_ids


def test_block_diagonal_mask():
    mask = block_diagonal_mask([[2, 3]], 6)
    allowed = (mask[0, 0] == 0).int().tolist()
    assert allowed == [
        [1, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [0, 0, 1, 0, 0, 0],
        [0, 0, 1, 1, 0, 0],
        [0, 0, 1, 1, 1, 0],
        [0, 0, 0, 0, 0, 1],  # padding attends to itself only
    ]
    assert mask.dtype == torch.float32 and mask.min() == torch.finfo(torch.float32).min
    assert block_diagonal_mask([[1]], 1, "bfloat16").dtype == torch.bfloat16
    with pytest.raises(ConfigError):
        block_diagonal_mask([[1]], 1, "int64")


# ------------------------------------------------------------------------ loss equivalence


def _loss_sum(logits, labels):
    shifted = logits[:, :-1].float()
    targets = labels[:, 1:]
    loss = torch.nn.functional.cross_entropy(
        shifted.reshape(-1, shifted.size(-1)), targets.reshape(-1), ignore_index=IGNORE,
        reduction="sum",
    )  # fmt: skip
    return loss, int((targets != IGNORE).sum())


def _unpacked_loss(model, rows):
    total, count = 0.0, 0
    with torch.no_grad():
        for row in rows:
            ids = torch.tensor([row["input_ids"]])
            loss, n = _loss_sum(
                model(input_ids=ids, use_cache=False).logits, torch.tensor([row["labels"]])
            )
            total, count = total + float(loss), count + n
    return total / count


def _packed_loss(model, packed, collator, **forward):
    batch = collator(packed)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        logits = model(**inputs, **forward).logits
    loss, count = _loss_sum(logits, batch["labels"])
    return float(loss) / count


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_packed_loss_equals_unpacked_loss(encoded, tiny_tokenizer, attn):
    from martlet_sdk.tiny import tiny_model

    model = tiny_model(tokenizer=tiny_tokenizer, attn_implementation=attn)
    reference = _unpacked_loss(model, encoded)
    packed = pack_rows(encoded, 200)
    assert any(len(p["seq_lens"]) > 1 for p in packed)
    pad = tiny_tokenizer.pad_token_id

    four_d = _packed_loss(model, packed, PackedCollator(pad, mask="4d"))
    assert four_d == pytest.approx(reference, rel=1e-5, abs=1e-5)
    # the model's cache does not matter with the 4D mask
    with_cache = _packed_loss(model, packed, PackedCollator(pad, mask="4d"), use_cache=True)
    assert with_cache == pytest.approx(reference, rel=1e-5, abs=1e-5)
    # position_ids alone: transformers finds the packed rows when no cache is used
    positions = _packed_loss(model, packed, PackedCollator(pad, mask="position_ids"),
                             use_cache=False)  # fmt: skip
    assert positions == pytest.approx(reference, rel=1e-5, abs=1e-5)

    # the comparison is sensitive: letting packed rows see each other changes the loss
    leaky = PackedCollator(pad, mask="position_ids")
    batch = leaky(packed)
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], use_cache=False).logits
    loss, count = _loss_sum(logits, batch["labels"])
    assert abs(float(loss) / count - reference) > 1e-3


def test_padded_batch_loss_equals_unpacked_loss(encoded, tiny_tokenizer):
    from martlet_sdk.tiny import tiny_model

    model = tiny_model(tokenizer=tiny_tokenizer)
    reference = _unpacked_loss(model, encoded)
    collator = PaddingCollator(tiny_tokenizer.pad_token_id)
    batch = collator(list(encoded))
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       use_cache=False).logits  # fmt: skip
    loss, count = _loss_sum(logits, batch["labels"])
    assert float(loss) / count == pytest.approx(reference, rel=1e-5, abs=1e-5)
    assert 0 < collator.padding_fraction < 1


# ------------------------------------------------------------------------ collators


def _row(n, label=None):
    row = {"input_ids": list(range(1, n + 1)), "attention_mask": [1] * n,
           "labels": [IGNORE] + list(range(2, n + 1))}  # fmt: skip
    if label is not None:
        row["label"] = label
    return row


def test_padding_collator_pads_right_and_reports_padding():
    collator = PaddingCollator(0)
    batch = collator([_row(2), _row(4)])
    assert batch["input_ids"].tolist() == [[1, 2, 0, 0], [1, 2, 3, 4]]
    assert batch["attention_mask"].tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    assert batch["labels"].tolist() == [[IGNORE, 2, IGNORE, IGNORE], [IGNORE, 2, 3, 4]]
    assert collator.last_padding_fraction == pytest.approx(2 / 8)
    collator([_row(3), _row(3)])
    assert collator.padding_fraction == pytest.approx(2 / 14)


def test_padding_collator_left_and_multiple_of():
    batch = PaddingCollator(9, padding_side="left", pad_to_multiple_of=4)([_row(1), _row(3)])
    assert batch["input_ids"].tolist() == [[9, 9, 9, 1], [9, 1, 2, 3]]
    assert batch["labels"][0].tolist() == [IGNORE] * 4


def test_padding_collator_pads_both_sides_of_a_pair_and_keeps_kto_labels():
    pair = {**_row(2), "rejected_input_ids": [5, 6, 7], "rejected_attention_mask": [1, 1, 1],
            "rejected_labels": [IGNORE, 6, 7]}  # fmt: skip
    batch = PaddingCollator(0)([pair])
    assert batch["input_ids"].shape == batch["rejected_input_ids"].shape == (1, 3)
    batch = PaddingCollator(0)([_row(2, True), _row(3, False)])
    assert batch["label"].tolist() == [True, False]


def test_collator_errors():
    with pytest.raises(ConfigError, match="pad token"):
        PaddingCollator(None)
    with pytest.raises(ConfigError, match="padding_side"):
        PaddingCollator(0, padding_side="middle")
    with pytest.raises(ConfigError, match="empty batch"):
        PaddingCollator(0)([])
    with pytest.raises(ConfigError, match="mask must be"):
        PackedCollator(0, mask="2d")
    with pytest.raises(ConfigError, match="empty batch"):
        PackedCollator(0)([])


def test_packed_collator_pads_positions_as_one_more_row():
    packed = pack_rows([_row(3), _row(2), _row(4)], 5)
    batch = PackedCollator(0)(packed)
    assert batch["position_ids"].tolist() == [[0, 1, 2, 3, 0], [0, 1, 2, 0, 1]]
    assert batch["attention_mask"].shape == (2, 1, 5, 5)
    assert "attention_mask" not in PackedCollator(0, mask="position_ids")(packed)


def test_pack_rows_refuses_labels_of_another_length():
    with pytest.raises(ConfigError, match="labels and input_ids differ"):
        pack_rows([{"input_ids": [1, 2], "labels": [1]}], 4)


def test_padding_free_batches_are_one_row_with_no_padding():
    from martlet_train.batching import PaddingFreeCollator

    rows = [
        {"input_ids": [5, 6, 7], "labels": [-100, 6, 7]},
        {"input_ids": [8, 9], "labels": [8, 9]},
    ]
    collate = PaddingFreeCollator(0)
    batch = collate(rows)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9]]
    # the second row's first token is never predicted from the first row's last one
    assert batch["labels"].tolist() == [[-100, 6, 7, -100, 9]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1]]
    assert "attention_mask" not in batch
    assert int(batch["num_tokens"]) == 5 and collate.padding_fraction == 0.0


def test_margins_reach_the_batch(martlet_manager, tmp_path, tiny_tokenizer):
    import json

    rows = [
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
         "rejected_response": "b", "margin": m}
        for m in (2.0, 0.5, None)
    ]  # fmt: skip
    path = tmp_path / "pairs.jsonl"
    path.write_text(
        "".join(json.dumps({k: v for k, v in r.items() if v is not None}) + "\n" for r in rows)
    )
    martlet_manager("data", "hf")
    encoded = encode_rows(
        list(martlet.load_dataset(str(path))), martlet.load_template(tiny_tokenizer)
    )
    batch = PaddingCollator(0)(list(encoded))
    assert batch["margin"].tolist() == [2.0, 0.5, 0.0]  # no margin: none required
    assert "margin" not in PaddingCollator(0)([encoded[2]])
