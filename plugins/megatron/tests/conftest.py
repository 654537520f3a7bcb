"""Fixtures of martlet-megatron's tests: tiny random Llama-family models saved as HF folders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

#: 4 layers (2 pipeline stages of 2), 4 query heads in 2 key/value groups (2 tensor ranks)
SHAPE = dict(
    hidden_size=96,
    intermediate_size=256,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=256,
    rms_norm_eps=1e-6,
)


def _save(model: Any, tokenizer: Any, folder: Path) -> Path:
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def build(family: str, folder: Path, *, tied: bool = False, dtype: str = "float32") -> Path:
    """A randomly initialised model of ``family`` (llama, qwen2, mistral) saved in ``folder``.
    Every weight (norms and biases too) is random, so a misplaced tensor changes the logits."""
    import torch
    import transformers
    from martlet_sdk.tiny import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    configs = {
        "llama": transformers.LlamaConfig,
        "qwen2": transformers.Qwen2Config,
        "mistral": transformers.MistralConfig,
    }
    config = configs[family](
        vocab_size=len(tokenizer),
        tie_word_embeddings=tied,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **SHAPE,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(len(family) + 10 * tied)
        model = transformers.AutoModelForCausalLM.from_config(config)
        with torch.no_grad():
            for param in model.parameters():
                param.normal_(0, 0.2)
    model = model.to(getattr(torch, dtype)).eval()
    return _save(model, tokenizer, folder)


@pytest.fixture(scope="session")
def make_model(tmp_path_factory: pytest.TempPathFactory):
    """``make_model(family, tied=False, dtype="float32") -> folder`` (cached per session)."""
    made: dict[tuple, Path] = {}

    def make(family: str, *, tied: bool = False, dtype: str = "float32") -> Path:
        key = (family, tied, dtype)
        if key not in made:
            name = f"{family}-{'tied' if tied else 'untied'}-{dtype}"
            made[key] = build(family, tmp_path_factory.mktemp(name), tied=tied, dtype=dtype)
        return made[key]

    return make


@pytest.fixture
def llama(make_model) -> Path:
    return make_model("llama")
