"""Text from token ids as they arrive: the pieces join to the whole decode (characters split
over tokens, special tokens, SentencePiece spaces), stop strings are cut exactly where they
begin even across pieces, and each token's bytes join back to the text."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from martlet_serve.detokenize import Detokenizer, StopStrings, TokenTexts

TEXTS = [
    "The capital of France is Paris.",
    "你好，我是一个助手。北京是中国的首都。",
    "Numbers: 0 1 2 3 ... 1000! ( ) [ ] { } é ü ß",
    "<|im_start|>assistant\nHello<|im_end|>",
]


@pytest.fixture(scope="module")
def tokenizer():
    from martlet_sdk.tiny import tiny_tokenizer

    return tiny_tokenizer()


def pieces(tokenizer, ids, prompt=(), step=1) -> list[str]:
    detok = Detokenizer(tokenizer, prompt)
    out = [detok.add(ids[i : i + step]) for i in range(0, len(ids), step)]
    return [*out, detok.flush()]


@pytest.mark.parametrize("text", TEXTS)
@pytest.mark.parametrize("step", [1, 3])
def test_the_pieces_join_to_the_whole_decode(tokenizer, text, step):
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    prompt = tokenizer("Hi there", add_special_tokens=False)["input_ids"]
    got = pieces(tokenizer, ids, prompt, step)
    assert "".join(got) == tokenizer.decode(ids, skip_special_tokens=True)
    assert not any("\ufffd" in p for p in got)  # split characters wait for their last byte


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ids=st.lists(st.integers(0, 511), max_size=40))
def test_any_ids_join_to_the_whole_decode(tokenizer, ids):
    assert "".join(pieces(tokenizer, ids)) == tokenizer.decode(
        ids, skip_special_tokens=True, clean_up_tokenization_spaces=False
    )


def test_sentencepiece_spaces_survive_token_by_token():
    """Llama's tokenizer drops a word's leading space when a token is decoded alone; the
    prompt's last tokens give the first new one its context."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "▁Hello": 1, "▁world": 2, "!": 3, "▁the": 4}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    raw.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    raw.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="never")
    raw.decoder = decoders.Metaspace(prepend_scheme="always")
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="<unk>")
    assert tok.decode([2]) == "world"  # alone, the space is gone
    assert "".join(pieces(tok, [2, 4, 3], prompt=[1])) == " world the!"


def feed_all(stops, parts) -> tuple[str, bool]:
    matcher = StopStrings(stops)
    out = []
    for part in parts:
        text, stopped = matcher.feed(part)
        out.append(text)
        if stopped:
            return "".join(out), True
    text, stopped = matcher.flush()
    return "".join(out) + text, stopped


@pytest.mark.parametrize(
    ("stops", "parts", "expected"),
    [
        (["END"], ["abc", "E", "N", "D", "more"], ("abc", True)),
        (["END"], ["abcEN", "d"], ("abcENd", False)),
        (["\n\n", "xy"], ["a\n", "\nb"], ("a", True)),
        (["cd", "bc"], ["abcd"], ("a", True)),  # the first to begin wins, not the first listed
        ([], ["ab", "c"], ("abc", False)),
        # a longer stop string that begins earlier may still complete (found by hypothesis)
        (["a", "XaX"], ["XXa", "X"], ("X", True)),
        (["a", "XaX"], ["XXa", "Z"], ("XX", True)),
        (["a", "XaX"], ["XXa"], ("XX", True)),
    ],
)
def test_stop_strings(stops, parts, expected):
    assert feed_all(stops, parts) == expected


@settings(deadline=None)
@given(
    text=st.text(alphabet="abcXY\n", max_size=40),
    stops=st.lists(st.text(alphabet="abcXY\n", min_size=1, max_size=4), min_size=1, max_size=3),
    cuts=st.lists(st.integers(0, 40), max_size=8),
)
def test_the_answer_ends_where_the_first_stop_string_begins(text, stops, cuts):
    bounds = sorted({0, len(text), *[min(c, len(text)) for c in cuts]})
    parts = [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    found = [i for s in stops if (i := text.find(s)) >= 0]
    expected = (text[: min(found)], True) if found else (text, False)
    assert feed_all(stops, parts) == expected


def test_token_bytes_join_to_the_text(tokenizer):
    texts = TokenTexts(tokenizer)
    for text in TEXTS[:3]:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        joined = b"".join(bytes(texts(i)[1]) for i in ids)
        assert joined.decode("utf-8") == text
    special = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert texts(special) == ("<|im_end|>", list(b"<|im_end|>"))
