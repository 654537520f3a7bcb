"""`martlet export --merge-lora` writes a model AutoModelForCausalLM loads, with the same logits
as the adapter-on model; bad requests are clear errors."""

from __future__ import annotations

import pytest
import torch
import yaml
from martlet_sdk.contracts import CommandContract


class TestExportCommand(CommandContract):
    @pytest.fixture
    def plugin(self):
        return "export"

    @pytest.fixture
    def record_name(self):
        return "export"


@pytest.fixture
def run_dir(tmp_path, tiny_model_dir):
    """A run directory as `martlet sft` leaves it: config.yaml + a trained LoRA adapter."""
    from martlet_peft.options import TunerOptions
    from martlet_peft.peft_methods import LoraTuner
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tuner = LoraTuner()
    model = tuner.prepare(base, TunerOptions(lora_rank=4, init_weights="gaussian"))
    with torch.no_grad():  # a "trained" adapter: B is no longer zero
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)
    run = tmp_path / "run"
    tuner.save(model, str(run))
    (run / "config.yaml").write_text(
        yaml.safe_dump({"model": str(tiny_model_dir), "tuner": "lora", "template": None})
    )
    ids = torch.tensor([[5, 17, 42, 99, 7, 3]])
    with torch.no_grad():
        expected = model.eval()(input_ids=ids).logits
    return run, ids, expected


def test_merge_lora_gives_a_plain_model_with_the_same_logits(
    martlet_manager, martlet_cli, run_dir, tmp_path
):
    from transformers import AutoModelForCausalLM

    martlet_manager("export", "hf", "peft")
    run, ids, expected = run_dir
    out = tmp_path / "merged"
    result = martlet_cli(
        "export", "--adapters", str(run), "--merge_lora", "true", "--output-dir", str(out)
    )
    assert result.exit_code == 0, result.stderr
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    assert not list(out.glob("adapter_*"))
    merged = AutoModelForCausalLM.from_pretrained(out).eval()
    with torch.no_grad():
        torch.testing.assert_close(merged(input_ids=ids).logits, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--output-dir", "X"], "nothing to export"),
        (["--model", "m", "--output-dir", "X"], "nothing to do"),
        (["--model", "m", "--merge-lora", "--output-dir", "X"], "--merge-lora needs --adapters"),
        (
            # a quantizer whose plugin is not in use here (not installed: "provided by
            # martlet-aqlm"; installed but not enabled: which plugin to enable)
            ["--model", "m", "--quant-method", "aqlm", "--output-dir", "X"],
            "martlet-aqlm",
        ),
        (["--adapters", "/no/such/run", "--merge-lora", "--output-dir", "X"], "not found"),
    ],
)
def test_bad_requests_are_clear_errors(martlet_manager, martlet_cli, args, message, tmp_path):
    martlet_manager("export", "hf", "peft")
    args = [a if a != "X" else str(tmp_path / "out") for a in args]
    result = martlet_cli("export", *args)
    assert result.exit_code != 0
    assert message in result.stderr and "Traceback" not in result.stderr


def test_a_non_mergeable_tuner_is_refused(martlet_manager, martlet_cli, run_dir, tmp_path):
    martlet_manager("export", "hf", "peft")
    run, _, _ = run_dir
    (run / "config.yaml").write_text(
        yaml.safe_dump(
            {
                "model": yaml.safe_load((run / "config.yaml").read_text())["model"],
                "tuner": "prompt-tuning",
            }
        )
    )
    result = martlet_cli(
        "export", "--adapters", str(run), "--merge-lora", "--output-dir", str(tmp_path / "o")
    )
    assert result.exit_code != 0
    assert "cannot be merged" in result.stderr


def test_a_folder_that_is_not_a_run(martlet_manager, martlet_cli, tmp_path):
    martlet_manager("export", "hf", "peft")
    result = martlet_cli(
        "export", "--adapters", str(tmp_path), "--merge-lora", "--output-dir", str(tmp_path / "o")
    )
    assert "is not a Martlet run directory" in result.stderr


def test_a_reward_model_run_merges_into_a_sequence_classifier(
    martlet_manager, martlet_cli, tiny_model_dir, tmp_path
):
    """A `rlhf --method rm` run (task_type seq_cls) exports as a standalone scorer."""
    from martlet.heads import sequence_scores
    from martlet_peft.options import TunerOptions
    from martlet_peft.peft_methods import LoraTuner
    from transformers import AutoModelForSequenceClassification

    martlet_manager("export", "hf", "peft")
    base = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1)
    base.config.pad_token_id = 0
    tuner = LoraTuner()
    options = TunerOptions(lora_rank=4, init_weights="gaussian", task_type="seq_cls")
    model = tuner.prepare(base, options)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name or "score" in name:
                param.normal_(0, 0.05)
    run = tmp_path / "rm"
    tuner.save(model, str(run))
    (run / "config.yaml").write_text(
        yaml.safe_dump({"model": str(tiny_model_dir), "tuner": "lora", "task_type": "seq_cls"})
    )
    ids = torch.tensor([[5, 17, 42, 99, 7, 3], [8, 9, 10, 11, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    with torch.no_grad():
        expected = sequence_scores(model.eval(), ids, mask)

    out = tmp_path / "merged"
    result = martlet_cli("export", "--adapters", str(run), "--merge-lora", "--output-dir", str(out))
    assert result.exit_code == 0, result.stderr
    merged = AutoModelForSequenceClassification.from_pretrained(out).eval()
    with torch.no_grad():
        torch.testing.assert_close(sequence_scores(merged, ids, mask), expected, atol=1e-5, rtol=0)


# ---------------------------------------------------------------------- where the export goes


def _run_files(run):
    return {p.name: p.stat().st_mtime_ns for p in run.iterdir()}


@pytest.mark.parametrize("overwrite", [True, False])
def test_exporting_into_the_run_itself_is_refused(martlet_manager, martlet_cli, run_dir, overwrite):
    """Merged weights written next to the run's adapter load with the adapter applied twice
    (logits 0.066 off on the tiny model); the run's own files would be replaced too."""
    martlet_manager("export", "hf", "peft")
    run, _, _ = run_dir
    before = _run_files(run)
    args = ["export", "--adapters", str(run), "--merge-lora", "--output-dir", str(run)]
    result = martlet_cli(*args, *(["--overwrite"] if overwrite else []))
    assert result.exit_code != 0
    assert "is the run being exported" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert _run_files(run) == before  # nothing written, nothing loaded


def test_exporting_a_checkpoint_into_its_run_is_refused(martlet_manager, martlet_cli, run_dir):
    import shutil

    martlet_manager("export", "hf", "peft")
    run, _, _ = run_dir
    checkpoint = run / "checkpoint-1"
    checkpoint.mkdir()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        shutil.copy(run / name, checkpoint / name)
    for adapters, out in ((checkpoint, run), (run, checkpoint)):
        args = ["--adapters", str(adapters), "--merge-lora", "--output-dir", str(out)]
        result = martlet_cli("export", *args, "--overwrite")
        assert result.exit_code != 0
        assert "run" in result.stderr and "--output-dir" in result.stderr, result.stderr
    assert not (run / "config.json").exists() and not (checkpoint / "config.json").exists()


def test_overwrite_leaves_no_adapter_next_to_the_merged_weights(
    martlet_manager, martlet_cli, run_dir, tmp_path
):
    """An earlier write left an adapter in --output-dir: --overwrite removes it, and the
    export loads (by transformers and by Martlet) with the logits of the adapter-on model."""
    import shutil

    import martlet
    from transformers import AutoModelForCausalLM

    martlet_manager("export", "hf", "peft")
    run, ids, expected = run_dir
    out = tmp_path / "merged"
    out.mkdir()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        shutil.copy(run / name, out / name)
    result = martlet_cli(
        "export", "--adapters", str(run), "--merge-lora", "--output-dir", str(out), "--overwrite"
    )
    assert result.exit_code == 0, result.stderr
    assert not list(out.glob("adapter_*"))
    assert "removed adapter_config.json" in result.stderr
    for model in (
        AutoModelForCausalLM.from_pretrained(out),
        martlet.load_model(str(out), torch_dtype="float32")[0],
    ):
        with torch.no_grad():
            logits = model.eval()(input_ids=ids).logits
        torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)


def test_a_merged_export_next_to_an_adapter_does_not_load(
    martlet_manager, martlet_cli, run_dir, tmp_path
):
    """A folder an earlier Martlet left that way loads with a clear error, not wrong logits."""
    import shutil

    import martlet
    from martlet.errors import MartletError

    martlet_manager("export", "hf", "peft")
    run, _, _ = run_dir
    out = tmp_path / "merged"
    result = martlet_cli("export", "--adapters", str(run), "--merge-lora", "--output-dir", str(out))
    assert result.exit_code == 0, result.stderr
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        shutil.copy(run / name, out / name)
    with pytest.raises(MartletError) as info:
        martlet.load_model(str(out))
    assert "merged model next to an adapter" in info.value.what
    assert "second time" in info.value.why or "twice" in info.value.why


@pytest.mark.parametrize("where", ["a file", "under a file"])
def test_an_output_dir_that_cannot_be_a_folder(
    martlet_manager, martlet_cli, run_dir, tmp_path, where
):
    martlet_manager("export", "hf", "peft")
    run, _, _ = run_dir
    file = tmp_path / "notes.txt"
    file.write_text("x")
    out = file if where == "a file" else file / "merged"
    result = martlet_cli("export", "--adapters", str(run), "--merge-lora", "--output-dir", str(out))
    assert result.exit_code != 0
    assert "--output-dir" in result.stderr and "is a file" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------------- damaged runs


@pytest.mark.parametrize("how", ["deleted", "truncated", "random bytes"])
def test_a_damaged_adapter_names_the_file(martlet_manager, martlet_cli, run_dir, tmp_path, how):
    import os

    martlet_manager("export", "hf", "peft")
    run, _, _ = run_dir
    file = run / "adapter_model.safetensors"
    if how == "deleted":
        file.unlink()
    elif how == "truncated":
        file.write_bytes(file.read_bytes()[: file.stat().st_size - 64])
    else:
        file.write_bytes(os.urandom(2048))
    out = tmp_path / "merged"
    result = martlet_cli("export", "--adapters", str(run), "--merge-lora", "--output-dir", str(out))
    assert result.exit_code != 0
    assert f"{file} is {'missing' if how == 'deleted' else 'damaged'}" in result.stderr, (
        result.stderr
    )
    assert "train again" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()
