"""`martlet sft` / `pt` end to end on the tiny model: the run directory, YAML configs, the flags
ms-swift users bring, Ctrl-C and resume, and the errors for bad requests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from martlet_sdk.contracts import CommandContract, LossContract

PLUGINS = ("train", "hf", "data", "peft", "accel")


class TestSftCommand(CommandContract):
    @pytest.fixture
    def plugin(self):
        return "train"

    @pytest.fixture(params=["sft", "pt", "rlhf"])
    def record_name(self, request):
        return request.param


class TestLosses(LossContract):
    @pytest.fixture
    def plugin(self):
        return "train"

    @pytest.fixture(params=["sft", "pt"])
    def record_name(self, request):
        return request.param


@pytest.fixture
def cli(martlet_manager, martlet_cli):
    martlet_manager(*PLUGINS)
    return martlet_cli


def base_args(model_dir: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--model",
        str(model_dir),
        "--output-dir",
        str(out),
        "--disable-progress-bar",
        "--logging-steps",
        "1",
        "--seed",
        "0",
        *extra,
    ]


def test_sft_writes_a_self_describing_run(cli, tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    result = cli(
        "sft",
        *base_args(
            tiny_model_dir,
            out,
            "--dataset",
            "sample-sft#24",
            "--max-steps",
            "3",
            "--per-device-train-batch-size",
            "4",
            "--split-dataset-ratio",
            "0.2",
            "--eval-steps",
            "3",
            "--learning-rate",
            "1e-3",
        ),
    )
    assert result.exit_code == 0, result.stderr + result.stdout
    files = {p.name for p in out.iterdir()}
    assert {
        "config.yaml",
        "plugins.lock.json",
        "adapter_model.safetensors",
        "adapter_config.json",
        "tokenizer.json",
        "trainer_state.json",
        "metrics.jsonl",
        "loss.png",
    } <= files
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["model"] == str(tiny_model_dir) and config["tuner"]["name"] == "lora"
    lock = {p["name"]: p for p in json.loads((out / "plugins.lock.json").read_text())}
    assert lock["train"]["status"] == "ok" and lock["train"]["version"]
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if "loss" in m] == [1, 2, 3]
    assert any("eval_loss" in m for m in metrics)
    assert "run saved to" in result.stdout


def test_pt_trains_on_every_token_of_raw_text(cli, tiny_model_dir, tmp_path):
    out = tmp_path / "pt"
    result = cli(
        "pt",
        *base_args(
            tiny_model_dir,
            out,
            "--dataset",
            "sample-pt#8",
            "--max-steps",
            "2",
            "--tuner",
            "full",
            "--max-length",
            "64",
            "--truncation-strategy",
            "right",
        ),
    )
    assert result.exit_code == 0, result.stderr
    assert (out / "model.safetensors").is_file()


def test_packing_cuts_padding(cli, tiny_model_dir, tmp_path):
    fractions = {}
    for packing in ("false", "true"):
        out = tmp_path / packing
        result = cli(
            "sft",
            *base_args(
                tiny_model_dir,
                out,
                "--dataset",
                "sample-sft#32",
                "--max-steps",
                "2",
                "--per-device-train-batch-size",
                "4",
                "--max-length",
                "256",
                "--packing",
                packing,
                "--padding-free",
                "false",
            ),
        )
        assert result.exit_code == 0, result.stderr
        metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        fractions[packing] = sum(m["padding_fraction"] for m in metrics) / len(metrics)
    assert fractions["true"] < fractions["false"]


def test_padding_free_batches_by_default_train_on_no_padding(
    martlet_manager, martlet_cli, tiny_model_dir, tmp_path
):
    """With martlet-kernels installed (a default install) the model attends segment by segment
    (its packed-attention kernel) and batches carry no padding; with --kernels none nothing
    offers that, and the same run trains on padded batches."""
    martlet_manager(*PLUGINS, "kernels")
    args = ("--dataset", "sample-sft#16", "--max-steps", "2", "--per-device-train-batch-size", "4")

    def padding(out, *extra):
        result = martlet_cli("sft", *base_args(tiny_model_dir, out, *args, *extra))
        assert result.exit_code == 0, result.stderr
        metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        return [m["padding_fraction"] for m in metrics if "padding_fraction" in m], result.stdout

    free, stdout = padding(tmp_path / "run")
    assert free and all(f == 0 for f in free)
    assert "attention: segment by segment" in stdout
    padded, stdout = padding(tmp_path / "plain", "--kernels", "none")
    assert any(f > 0 for f in padded) and "attention: segment by segment" not in stdout


def test_a_yaml_config_with_sections_and_ms_swift_names(cli, tiny_model_dir, tmp_path):
    out = tmp_path / "yaml-run"
    config = {
        "model": {"model_type": str(tiny_model_dir), "torch_dtype": "float32"},
        "data": {
            "dataset": ["self-cognition#8"],
            "model_name": ["Aria", "阿莉亚"],
            "model_author": ["Acme Labs", "顶点实验室"],
        },
        "training_args": {
            "train_type": "lora",
            "lora_rank": 4,
            "lora_alpha": 8,
            "target_modules": ["all-linear"],
            "num_train_epochs": 1,
            "max_steps": 2,
            "per_device_train_batch_size": 2,
            "gradient_accumulation_steps": 2,
            "learning_rate": 1e-3,
            "warmup_ratio": 0.1,
            "save_steps": 100,
            "eval_steps": 100,
            "logging_steps": 1,
            "seed": 0,
            "output_dir": str(out),
            "device_map": None,
            "half_precision_backend": "auto",
            "fallback_on_cpu": True,
        },
    }
    file = tmp_path / "sft.yaml"
    file.write_text(yaml.safe_dump(config, allow_unicode=True))
    printed = cli("sft", "--config", str(file), "--print-config", "--lora_rank", "2")
    assert printed.exit_code == 0, printed.stderr
    resolved = yaml.safe_load(printed.stdout)
    # the flag wins; the tuner's options are written under it
    assert resolved["tuner"]["lora_rank"] == 2 and resolved["tuner"]["name"] == "lora"
    result = cli("sft", "--config", str(file), "--disable-progress-bar")
    assert result.exit_code == 0, result.stderr
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 4


def test_ms_swift_command_line_flags(cli, tiny_model_dir, tmp_path):
    out = tmp_path / "swift"
    result = cli(
        "sft",
        "--model_type",
        str(tiny_model_dir),
        "--train_type",
        "lora",
        "--lora_rank",
        "4",
        "--lora_alpha",
        "16",
        "--target_modules",
        "q_proj",
        "v_proj",
        "--dataset",
        "sample-sft#8",
        "--num_train_epochs",
        "1",
        "--per_device_train_batch_size",
        "2",
        "--gradient_accumulation_steps",
        "2",
        "--learning_rate",
        "1e-4",
        "--max_length",
        "128",
        "--output_dir",
        str(out),
        "--system",
        "You are helpful.",
        "--save_steps",
        "50",
        "--eval_steps",
        "50",
        "--logging_steps",
        "1",
        "--warmup_ratio",
        "0.05",
        "--seed",
        "1",
        "--disable-progress-bar",
    )
    assert result.exit_code == 0, result.stderr
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["r"] == 4 and set(adapter["target_modules"]) == {"q_proj", "v_proj"}
    assert yaml.safe_load((out / "config.yaml").read_text())["system"] == "You are helpful."


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--tuner", "lorra"], "did you mean 'lora'"),
        (["--train_type", "deepspeed"], "is a parallel strategy, not a tuner"),
        (["--dataset", "no-such-dataset-anywhere.jsonl"], "no-such-dataset-anywhere"),
        (["--lora-rnk", "8"], "did you mean --lora-rank"),
        (["--beta", "0.1"], "martlet rlhf"),
        (["--quant-method", "aqlm"], "martlet-aqlm"),  # a quantizer not installed here
        # options of plugins not in use here (installed, not in MARTLET_PLUGINS): the package
        # and how to enable it (the known-options index of martlet.providers, not a list in
        # martlet-train)
        (["--deepspeed", "zero2"], "from martlet-deepspeed, installed but not listed"),
        (["--use_npu", "true"], "from martlet-npu, installed but not listed"),
        (["--parallel", "megatron"], "martlet-megatron"),
        (["--eval_dataset", "mmlu"], "`martlet eval`, from martlet-eval"),
        (["--report-to", "wandb"], "wandb"),
        (["--packing"], "--packing needs --max-length"),
        (["--task-type", "seq_cls"], "martlet rlhf --method rm"),
    ],
)
def test_bad_requests_fail_fast_and_clearly(cli, tiny_model_dir, tmp_path, extra, message):
    args = base_args(tiny_model_dir, tmp_path / "bad", "--dataset", "sample-sft#4", *extra)
    result = cli("sft", *args)
    assert result.exit_code != 0
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_a_model_that_cannot_load(cli, tmp_path):
    result = cli(
        "sft",
        "--model",
        str(tmp_path / "nothing-here"),
        "--dataset",
        "sample-sft#4",
        "--output-dir",
        str(tmp_path / "o"),
    )
    assert result.exit_code != 0 and "Traceback" not in result.stderr
    assert "nothing-here" in result.stderr


def test_an_existing_run_is_not_overwritten_by_accident(cli, tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    args = base_args(tiny_model_dir, out, "--dataset", "sample-sft#4", "--max-steps", "1")
    assert cli("sft", *args).exit_code == 0
    again = cli("sft", *args)
    assert again.exit_code != 0 and "already holds a run" in again.stderr
    assert cli("sft", *args, "--overwrite-output-dir").exit_code == 0


def test_a_yaml_with_rlhf_args_names_the_command_that_takes_them(cli, tiny_model_dir, tmp_path):
    file = tmp_path / "c.yaml"
    file.write_text(
        yaml.safe_dump(
            {
                "model": str(tiny_model_dir),
                "dataset": ["sample-sft#4"],
                "rlhf_args": {"method": "dpo", "beta": 0.1},
            }
        )
    )
    result = cli("sft", "--config", str(file))
    assert result.exit_code != 0
    assert "martlet rlhf" in result.stderr


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_and_the_run_resumes(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-c",
        "import sys; from martlet.cli import main; sys.exit(main())",
        "sft",
        *base_args(
            tiny_model_dir,
            out,
            "--dataset",
            "sample-sft#64",
            "--max-steps",
            "400",
            "--save-steps",
            "1000",
        ),
    ]
    env = {**os.environ, "MARTLET_PLUGINS": ",".join(PLUGINS)}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    metrics = out / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= 3:
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "checkpoint saved" in stdout
    checkpoints = sorted(out.glob("checkpoint-*"))
    assert len(checkpoints) == 1
    step = int(checkpoints[0].name.split("-")[1])
    assert 3 <= step < 400
    resume = subprocess.run(
        [*cmd[:-2], "--max-steps", str(step + 2), "--resume-from-checkpoint", "auto"],
        capture_output=True,
        text=True,
        env=env,
    )
    resume_cmd_ok = resume.returncode == 0
    assert resume_cmd_ok, resume.stderr
    assert f"resumed from {checkpoints[0]} at step {step}" in resume.stdout
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == step + 2


@pytest.mark.parametrize(
    ("native", "tuner", "mixed", "weights"),
    [
        ("1", "lora", "bf16", "bfloat16"),
        ("1", "full", "bf16", "float32"),
        ("0", "lora", "no", "float32"),
    ],
)
def test_auto_precision_is_resolved_printed_and_recorded(
    cli, tiny_model_dir, tmp_path, monkeypatch, native, tuner, mixed, weights
):
    """What `auto` became is printed once and written to config.yaml (the CPU made to report
    native bf16 or none with MARTLET_CPU_BF16)."""
    monkeypatch.setenv("MARTLET_CPU_BF16", native)
    out = tmp_path / "run"
    args = ("--dataset", "sample-sft#8", "--max-steps", "1", "--tuner", tuner)
    result = cli("sft", *base_args(tiny_model_dir, out, *args))
    assert result.exit_code == 0, result.stderr
    compute = {"bf16": "bfloat16", "no": "float32"}[mixed]
    assert result.stdout.count("precision (auto):") == 1
    assert f"{compute} compute, {weights} weights on cpu" in result.stdout
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert (config["mixed_precision"], config["torch_dtype"]) == (mixed, weights)
    assert "warning:" not in result.stdout


def test_explicit_bf16_on_a_cpu_without_it_runs_with_one_warning(cli, tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    args = ("--dataset", "sample-sft#8", "--max-steps", "1", "--mixed-precision", "bf16")
    result = cli("sft", *base_args(tiny_model_dir, out, *args))
    assert result.exit_code == 0, result.stderr
    assert result.stdout.count("warning: bfloat16 on this cpu is not native") == 1
    assert "--mixed-precision auto" in result.stdout
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert (config["mixed_precision"], config["torch_dtype"]) == ("bf16", "float32")


def test_an_empty_dataset_fails_before_the_model_loads(cli, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    out = tmp_path / "run"
    missing_model = tmp_path / "no-such-model"  # never reached: the data is checked first
    result = cli("sft", *base_args(missing_model, out, "--dataset", str(empty)))
    assert result.exit_code != 0
    assert "empty.jsonl' has no rows" in result.stderr and "0 bytes" in result.stderr
    assert not (out / "config.yaml").exists()


def test_rows_all_too_long_say_how_many_were_dropped(cli, tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    args = ("--dataset", "sample-sft#4", "--max-length", "8", "--truncation-strategy", "delete")
    result = cli("sft", *base_args(tiny_model_dir, out, *args))
    assert result.exit_code != 0
    assert "no rows left to train on after encoding" in result.stderr
    assert "all 4 rows were dropped: 4 longer than --max-length 8" in result.stderr


def test_the_activation_budget_recomputes_layers_only_when_asked_to_save_memory(
    cli, tiny_model_dir, tmp_path
):
    def recomputed(limit: str) -> list:
        out = tmp_path / limit
        args = ("--dataset", "sample-sft#8", "--max-steps", "2", "--max-activation-memory", limit)
        result = cli("sft", *base_args(tiny_model_dir, out, *args))
        assert result.exit_code == 0, result.stderr
        lines = (out / "metrics.jsonl").read_text().splitlines()
        return [json.loads(line).get("recomputed_layers") for line in lines if "loss" in line]

    assert all(n and n > 0 for n in recomputed("1KB"))  # nothing fits: layers are recomputed
    assert all(n == 0 for n in recomputed("1GB"))  # everything fits
    assert all(n is None for n in recomputed("none"))  # no budget at all
    bad = cli(
        "sft", *base_args(tiny_model_dir, tmp_path / "bad", "--max-activation-memory", "lots")
    )
    assert bad.exit_code != 0 and "cannot read 'lots' as a size" in bad.stderr
