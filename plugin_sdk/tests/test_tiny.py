"""The offline tiny model and tokenizer, and the SDK's fixtures."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def test_tiny_model_is_small_deterministic_and_offline(tiny_tokenizer):
    import torch
    from martlet_sdk.tiny import tiny_model

    a = tiny_model(seed=3, tokenizer=tiny_tokenizer)
    state = torch.random.get_rng_state()
    b = tiny_model(seed=3, tokenizer=tiny_tokenizer)
    assert torch.equal(state, torch.random.get_rng_state()), "global RNG untouched"
    c = tiny_model(seed=4, tokenizer=tiny_tokenizer)
    n = sum(p.numel() for p in a.parameters())
    assert 100_000 < n < 1_000_000
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    assert any(
        not torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters(), strict=True)
    )
    ids = tiny_tokenizer("What is the capital of France?", return_tensors="pt").input_ids
    logits = a(ids).logits
    assert logits.shape == (1, ids.shape[1], len(tiny_tokenizer))
    out = a.generate(ids, max_new_tokens=5, do_sample=False)
    assert out.shape[1] <= ids.shape[1] + 5


def test_tiny_model_builds_in_under_a_second_once_libraries_are_imported():
    code = (
        "import time, torch, transformers\n"
        "from transformers import LlamaForCausalLM, PreTrainedTokenizerFast\n"
        "from martlet_sdk.tiny import tiny_model, tiny_tokenizer\n"
        "t = time.perf_counter(); tok = tiny_tokenizer(); tiny_model(tokenizer=tok)\n"
        "print(time.perf_counter() - t)\n"
    )
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    import os

    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        check=True,
    )
    seconds = float(out.stdout.strip().splitlines()[-1])
    # a generous bound: this only guards against a download or a training loop sneaking in
    assert seconds < 5, seconds


def test_tokenizer_round_trips_and_masks_assistant_turns(tiny_tokenizer):
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Who are you?"},
        {"role": "assistant", "content": "I am an assistant."},
    ]
    text = tiny_tokenizer.apply_chat_template(messages, tokenize=False)
    assert text.endswith("<|im_start|>assistant\nI am an assistant.<|im_end|>\n")
    ids = tiny_tokenizer(text)["input_ids"]
    assert tiny_tokenizer.decode(ids) == text
    enc = tiny_tokenizer.apply_chat_template(
        messages, return_dict=True, return_assistant_tokens_mask=True
    )
    masked = [i for i, m in zip(enc["input_ids"], enc["assistant_masks"], strict=True) if m]
    assert tiny_tokenizer.decode(masked) == "I am an assistant.<|im_end|>"
    assert "你好" in tiny_tokenizer.decode(tiny_tokenizer("你好")["input_ids"])


def test_tiny_model_dir_loads_with_auto_classes(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert (tiny_model_dir / "model.safetensors").is_file()
    assert model.config.model_type == "llama" and tok.chat_template


def test_martlet_manager_holds_only_the_named_plugins(martlet_manager, martlet_cli):
    manager = martlet_manager("sdk")
    statuses = {p.name: p.effective_status for p in manager.plugins}
    assert statuses["sdk"] == "ok" and statuses["core"] == "ok"
    assert all(s == "blocked" for n, s in statuses.items() if n not in ("sdk", "core"))
    result = martlet_cli("plugins", "--json", "--kind", "commands")
    assert result.exit_code == 0
    names = {p["name"] for p in json.loads(result.stdout)}
    assert names == {"core", "sdk"}


def test_martlet_manager_takes_a_module_as_a_local_plugin(martlet_manager):
    import types

    from martlet import hookimpl
    from martlet.records import TunerRecord

    mod = types.ModuleType("my_tuners")

    @hookimpl
    def martlet_tuners():
        yield TunerRecord(name="mine", impl="json:dumps", summary="mine")

    mod.martlet_tuners = martlet_tuners
    manager = martlet_manager(mod, builtins=False)
    assert manager.registry.get("tuners", "mine").load() is json.dumps
    assert [p.source for p in manager.plugins] == ["local"]


def test_martlet_manager_refuses_a_plugin_that_is_not_installed(martlet_manager):
    from martlet.errors import PluginError

    with pytest.raises(PluginError, match="not installed"):
        martlet_manager("no-such-plugin")


def test_the_pytest_plugin_imports_no_heavy_library():
    code = "import sys, martlet_sdk.pytest_plugin; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
