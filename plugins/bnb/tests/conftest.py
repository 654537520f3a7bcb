"""Fixtures for martlet-bnb's tests: nothing may be downloaded (``HF_HUB_OFFLINE=1``), the
process-wide manager holds the plugins a quantized load needs, and two tiny models on disk:
``wide_model_dir`` (hidden 128, intermediate 256: multiples of bitsandbytes' 64-weight blocks)
and the SDK's ``tiny_model_dir`` (hidden 96: not a multiple of 64)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

#: the tiny model's widths where every layer is a whole number of 64-weight blocks
WIDE = {"hidden_size": 128, "intermediate_size": 256, "num_attention_heads": 4}
#: the plugins a quantized load, a LoRA run and the commands on it need
PLUGINS = ("bnb", "hf", "accel", "peft")


@pytest.fixture(autouse=True)
def _environment(monkeypatch, martlet_manager):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    martlet_manager(*PLUGINS)


@pytest.fixture(scope="session")
def wide_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from martlet_sdk.tiny import tiny_model, tiny_tokenizer

    folder = tmp_path_factory.mktemp("wide-model")
    tokenizer = tiny_tokenizer()
    tiny_model(seed=0, tokenizer=tokenizer, **WIDE).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def ids() -> Any:
    import torch

    return torch.randint(3, 200, (2, 16), generator=torch.Generator().manual_seed(1))
