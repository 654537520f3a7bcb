"""The model registry's data and `martlet model list|info`."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from martlet.registry import get, names
from martlet_hf.catalog import DEFAULT_MODEL, FAMILIES, MODELS
from martlet_hf.plugin import TEMPLATES

REQUIRED_FAMILIES = {
    "llama2": {"7B", "13B", "70B"},
    "llama3": {"8B", "70B"},
    "llama3.1": {"8B", "70B", "405B"},
    "llama3.2": {"1B", "3B"},
    "llama3.3": {"70B"},
    "qwen2": {"0.5B", "1.5B", "7B", "72B"},
    "qwen2.5": {"0.5B", "1.5B", "3B", "7B", "14B", "32B", "72B"},
    "qwen3": {"0.6B", "1.7B", "4B", "8B", "14B", "32B"},
    "mistral": {"7B"},
    "gemma2": {"2B", "9B", "27B"},
    "gemma3": {"1B", "4B", "12B", "27B"},
    "phi3": {"3.8B", "14B"},
    "phi4": {"14B"},
    "smollm2": {"135M", "360M", "1.7B"},
    "deepseek-r1-distill": {"1.5B", "7B", "8B", "14B", "32B", "70B"},
    "glm4": {"9B"},
    "internlm2": {"1.8B", "7B", "20B"},
    "internlm3": {"8B"},
    "yi": {"6B", "9B", "34B"},
}
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def test_every_required_family_in_its_common_sizes():
    catalogued = [*MODELS, DEFAULT_MODEL]
    for family, sizes in REQUIRED_FAMILIES.items():
        have = {m.size for m in catalogued if m.family == family}
        assert sizes <= have, (family, sorted(sizes - have))


def test_catalog_data_is_consistent():
    catalogued = [*MODELS, DEFAULT_MODEL]
    all_names = [m.name for m in catalogued] + [a for m in catalogued for a in m.aliases]
    assert len(all_names) == len(set(all_names))
    for model in catalogued:
        assert model.family in FAMILIES, model
        assert HUB_ID.match(model.hf), model
        assert not model.ms or HUB_ID.match(model.ms), model
        assert model.size and model.modality in ("text", "vision")
        assert (model.template or FAMILIES[model.family].template) in TEMPLATES
    hub_ids = [m.hf for m in catalogued]
    assert len(hub_ids) == len(set(hub_ids))
    assert set(FAMILIES) == {m.family for m in catalogued}


def test_records_carry_the_catalog():
    record = get("models", "qwen2.5-7b-instruct")
    assert record.family == "qwen2.5" and record.template == "qwen" and record.size == "7B"
    assert record.hub_ids == {
        "huggingface": "Qwen/Qwen2.5-7B-Instruct",
        "modelscope": "Qwen/Qwen2.5-7B-Instruct",
    }
    assert get("models", "llama3.1-8b-instruct").hub_ids["modelscope"] == (
        "LLM-Research/Meta-Llama-3.1-8B-Instruct"
    )
    default = get("models", "smollm2")
    assert default.name == "smollm2-135m-instruct" and default.impl == "martlet_hf.embedded:resolve"
    assert len(names("models")) == len(MODELS) + 1


# ---------------------------------------------------------------------- model list


def test_model_list(martlet_cli):
    result = martlet_cli("model", "list")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["NAME", "FAMILY", "SIZE"]
    assert len(lines) == len(MODELS) + 2
    assert any(line.split()[:3] == ["smollm2-135m-instruct", "smollm2", "135M"] for line in lines)


def test_model_list_json_and_family(martlet_cli):
    result = martlet_cli("models", "list", "--json", "--family", "Qwen2.5")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert rows and {r["family"] for r in rows} == {"qwen2.5"}
    row = next(r for r in rows if r["name"] == "qwen2.5-0.5b-instruct")
    assert row["hub_ids"]["huggingface"] == "Qwen/Qwen2.5-0.5B-Instruct"
    assert row["template"] == "qwen" and row["size"] == "0.5B" and row["plugin"] == "martlet-hf"


def test_model_list_unknown_family(martlet_cli):
    result = martlet_cli("model", "list", "--family", "qwen25")
    assert result.exit_code == 2
    assert "no registered model of family 'qwen25'" in result.stderr
    assert "qwen2.5" in result.stderr


# ---------------------------------------------------------------------- model info


def test_model_info_of_a_registered_id(martlet_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    result = martlet_cli("model", "info", "gemma-3-4b-it", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["family"] == "gemma3" and data["modality"] == "vision"
    assert data["hub_ids"]["modelscope"] == "LLM-Research/gemma-3-4b-it"
    assert data["resolves_from"] == {
        "origin": "hub",
        "description": "the hub only: not on this machine yet",
        "source": "google/gemma-3-4b-it",
        "path": None,
    }
    assert data["loader"] == "hf"
    text = martlet_cli("model", "info", "gemma-3-4b-it").stdout
    assert "resolves from  hub: google/gemma-3-4b-it" in text
    assert "martlet download gemma-3-4b-it" in text


def test_model_info_by_hub_id(martlet_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    data = json.loads(martlet_cli("model", "info", "microsoft/phi-4", "--json").stdout)
    assert data["name"] == "phi-4" and data["template"] == "phi4"


def test_model_info_of_a_folder_matches_its_family(martlet_cli, tiny_model_dir, tmp_path):
    folder = tmp_path / "Meta-Llama-3-8B-finetuned"
    shutil.copytree(tiny_model_dir, folder)
    result = martlet_cli("model", "info", str(folder), "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["resolves_from"]["origin"] == "path"
    assert data["detected"]["family"] == "llama3" and data["family"] == "llama3"
    assert data["template"] == "llama3" and data["loader"] == "hf"
    text = martlet_cli("model", "info", str(folder)).stdout
    assert "detected       llama3" in text


def test_model_info_of_a_folder_of_no_known_family(martlet_cli, tiny_model_dir):
    result = martlet_cli("model", "info", str(tiny_model_dir))
    assert result.exit_code == 0, result.stderr
    assert "no known family" in result.stdout


def test_model_info_of_an_unknown_id_suggests_close_ones(martlet_cli):
    result = martlet_cli("model", "info", "llama3.1-8b-instrukt")
    assert result.exit_code == 2
    assert "unknown model 'llama3.1-8b-instrukt'" in result.stderr
    assert "llama3.1-8b-instruct" in result.stderr


def test_model_info_of_an_unregistered_hub_id(martlet_cli, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    data = json.loads(martlet_cli("model", "info", "acme/new-model", "--json").stdout)
    assert data["resolves_from"]["origin"] == "hub" and "name" not in data


@pytest.mark.parametrize("command", [("model",), ("model", "list"), ("model", "info")])
def test_help(martlet_cli, command):
    result = martlet_cli(*command, "--help")
    assert result.exit_code == 0 and "Usage:" in result.stdout


def test_the_core_knows_which_names_martlet_hf_provides():
    from martlet.providers import PROVIDERS

    for kind, table in PROVIDERS.items():
        ours = {name for name, dist in table.items() if dist == "martlet-hf"}
        assert ours <= set(names(kind)), (kind, sorted(ours - set(names(kind))))
    assert {n for n, d in PROVIDERS["templates"].items() if d == "martlet-hf"} == set(TEMPLATES)
