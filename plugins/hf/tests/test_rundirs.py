"""Damaged run directories, checkpoints and model folders: `martlet.load_model` names the
missing or damaged file and says what to do, instead of a library's message about the network
or a safetensors header."""

from __future__ import annotations

import json
import os
import shutil

import martlet
import pytest
import yaml
from martlet.errors import MartletError
from martlet.rundirs import DamagedFilesError, check_folder, check_safetensors


@pytest.fixture(autouse=True)
def _tuners(martlet_manager):
    """The tuner records say which files a run must hold (`TunerRecord.saves`)."""
    pytest.importorskip("martlet_peft", reason="martlet-peft's tuner records")
    martlet_manager("hf", "peft")


@pytest.fixture
def full_run(tiny_model_dir, tmp_path):
    """A run directory of a whole-model tuner (`--tuner full`): the trained model as a Hugging
    Face folder next to the run's config.yaml."""
    run = tmp_path / "run"
    shutil.copytree(tiny_model_dir, run)
    (run / "config.yaml").write_text(
        yaml.safe_dump({"model": str(tiny_model_dir), "tuner": "full"})
    )
    return run


@pytest.fixture
def lora_run(tiny_model_dir, tmp_path):
    """A run directory of a PEFT tuner: an adapter and the run's config.yaml."""
    import torch
    from safetensors.torch import save_file

    run = tmp_path / "lora-run"
    run.mkdir()
    (run / "config.yaml").write_text(
        yaml.safe_dump({"model": str(tiny_model_dir), "tuner": "lora"})
    )
    (run / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4}))
    save_file({"lora_A.weight": torch.zeros(4, 8)}, str(run / "adapter_model.safetensors"))
    return run


def _damage(file, how):
    if how == "deleted":
        file.unlink()
    elif how == "empty":
        file.write_bytes(b"")
    elif how == "truncated":
        file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
    elif how == "cut in the header":
        file.write_bytes(file.read_bytes()[:40])
    else:  # random bytes
        file.write_bytes(os.urandom(4096))


DAMAGE = ["deleted", "empty", "truncated", "cut in the header", "random bytes"]


def test_whole_folders_pass(full_run, lora_run, tiny_model_dir):
    check_folder(tiny_model_dir)
    check_folder(full_run, "full")
    check_folder(lora_run, "lora")
    check_safetensors(tiny_model_dir / "model.safetensors")
    model, _ = martlet.load_model(str(full_run))
    assert model is not None


@pytest.mark.parametrize("how", DAMAGE)
def test_a_damaged_full_run_names_its_weights(full_run, how):
    file = full_run / "model.safetensors"
    _damage(file, how)
    with pytest.raises(DamagedFilesError) as info:
        martlet.load_model(str(full_run))
    error = info.value
    assert error.what == f"{file} is {'missing' if how == 'deleted' else 'damaged'}"
    assert "the run directory cannot load" in error.why and "train again" in error.fix
    assert "SafetensorError" not in str(error) and "header length" not in str(error)


@pytest.mark.parametrize("how", DAMAGE)
def test_a_damaged_adapter_names_the_file(lora_run, how):
    file = lora_run / "adapter_model.safetensors"
    _damage(file, how)
    with pytest.raises(DamagedFilesError) as info:
        martlet.load_model(str(lora_run))
    assert info.value.what == f"{file} is {'missing' if how == 'deleted' else 'damaged'}"
    assert "adapter" in info.value.why and "train again" in info.value.fix


def test_an_adapter_without_its_settings(lora_run):
    (lora_run / "adapter_config.json").unlink()
    with pytest.raises(DamagedFilesError, match="adapter_config.json is missing"):
        martlet.load_model(str(lora_run))


def test_a_whole_lora_run_says_to_load_it_as_a_run(lora_run):
    with pytest.raises(MartletError) as info:
        martlet.load_model(str(lora_run))
    assert "is a training run, not a model folder" in info.value.what
    assert "--adapters" in info.value.fix and "martlet.load_run" in info.value.fix


def test_a_damaged_checkpoint_points_at_another(lora_run):
    for step in (3, 6):
        checkpoint = lora_run / f"checkpoint-{step}"
        checkpoint.mkdir()
        for name in ("adapter_config.json", "adapter_model.safetensors"):
            shutil.copy(lora_run / name, checkpoint / name)
    _damage(lora_run / "checkpoint-6" / "adapter_model.safetensors", "truncated")
    with pytest.raises(DamagedFilesError) as info:
        martlet.load_model(str(lora_run / "checkpoint-6"))
    assert "the checkpoint" in info.value.why
    assert f"--resume-from-checkpoint {lora_run / 'checkpoint-3'}" in info.value.fix
    _damage(lora_run / "adapter_model.safetensors", "truncated")  # the run's final adapter
    with pytest.raises(DamagedFilesError) as info:
        martlet.load_model(str(lora_run))
    assert f"--adapters {lora_run / 'checkpoint-6'}" in info.value.fix


def test_a_missing_shard_is_named(full_run):
    from safetensors.torch import load_file, save_file

    state = load_file(str(full_run / "model.safetensors"))
    names = sorted(state)
    half = len(names) // 2
    shards = {"model-00001-of-00002.safetensors": names[:half]}
    shards["model-00002-of-00002.safetensors"] = names[half:]
    for shard, keys in shards.items():
        save_file({k: state[k] for k in keys}, str(full_run / shard), metadata={"format": "pt"})
    weight_map = {k: shard for shard, keys in shards.items() for k in keys}
    (full_run / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": weight_map})
    )
    (full_run / "model.safetensors").unlink()
    martlet.load_model(str(full_run))  # whole shards load
    (full_run / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(DamagedFilesError, match="model-00002-of-00002.safetensors is missing"):
        martlet.load_model(str(full_run))


def test_a_damaged_model_folder_says_to_fetch_it_again(tiny_model_dir, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    _damage(folder / "model.safetensors", "truncated")
    with pytest.raises(DamagedFilesError) as info:
        martlet.load_model(str(folder))
    assert "model folder" in info.value.why and "download the model again" in info.value.fix


def test_a_run_holding_a_merged_model_and_its_adapter_does_not_load_as_a_model(
    tiny_model_dir, lora_run
):
    """What `martlet export --output-dir RUN` used to leave: transformers would load the merged
    weights and apply the adapter next to them again."""
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_model_dir / name, lora_run / name)
    (lora_run / "martlet_export.json").write_text(json.dumps({"merged": True}))
    with pytest.raises(DamagedFilesError) as info:
        martlet.load_model(str(lora_run))
    assert "merged model next to an adapter" in info.value.what
    assert f"--adapters {lora_run}" in info.value.fix


def test_a_folder_with_another_config_yaml_is_not_taken_for_a_run(tiny_model_dir, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "config.yaml").write_text("sample_rate: 16000\n")  # some other tool's settings
    model, _ = martlet.load_model(str(folder))
    assert model is not None
