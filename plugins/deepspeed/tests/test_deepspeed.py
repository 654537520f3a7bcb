"""`martlet sft --nproc-per-node 2 --deepspeed ...` over gloo on this CPU: DeepSpeed's ZeRO
engine (stages 1, 2 and 3, the optimizer and the parameters offloaded to the CPU) trains like one
process with the same global batch (LoRA and full fine-tuning), the parameters and optimizer
state really are partitioned, the saved files are the ones one process writes, a checkpoint
resumes on DeepSpeed (on two processes and on one) and on DDP (and one process's on DeepSpeed),
the run exports, and runs without DeepSpeed never import it.

The first run compiles DeepSpeed's shared-memory communication op and CPU Adam (ninja, once per
machine, about a minute each on two cores; cached under ~/.cache/torch_extensions)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from martlet_sdk.testing import assert_same_tensors
from martlet_sdk.testing import logged as curve
from martlet_sdk.testing import run_cli as martlet

BASE = (
    "--dataset", "sample-sft#32", "--logging-steps", "1", "--seed", "7",
    "--lr-scheduler-type", "constant",
)  # fmt: skip
COMMON = (*BASE, "--lora-dropout", "0", "--learning-rate", "1e-3", "--max-steps", "4")
TWO = ("--per-device-train-batch-size", "2", "--nproc-per-node", "2")

pytestmark = pytest.mark.slow

#: ZeRO sums the gradient norm in float64 over its partitions and the offloaded optimizer is
#: DeepSpeed's CPU Adam: after a few steps the weights agree with one process's to rounding
ROUNDING = {"rtol": 1e-4, "atol": 1e-5}


def tensors(path: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(path))


@pytest.fixture(scope="module")
def lora_one(tiny: str, shared) -> Path:
    """One process, LoRA, 4 steps of 4 rows, a checkpoint at step 2 (the reference)."""

    def make(one: Path) -> None:
        single = martlet(
            "sft", "--model", tiny, *COMMON, "--per-device-train-batch-size", "4",
            "--save-steps", "2", "--output-dir", str(one),
        )  # fmt: skip
        assert single.returncode == 0, single.stderr

    return shared("lora-one", make)


PARTITIONS = """
import gc
import json
import os

from martlet import hookimpl
from martlet.records import CallbackRecord


class Partitions:
    def __init__(self, **options):
        pass

    def on_log(self, step, metrics):
        pass

    def on_end(self):
        pass

    def on_step(self, step):
        from deepspeed import DeepSpeedEngine

        engine = next(o for o in gc.get_objects() if isinstance(o, DeepSpeedEngine))
        params = [p for p in engine.module.parameters() if hasattr(p, "ds_id")]
        out = {
            "optimizer": type(engine.basic_optimizer).__name__,
            "zero": type(engine.optimizer).__name__,
            "params": len(params),
            "local": sum(p.ds_tensor.numel() for p in params),
            "whole": sum(p.ds_numel for p in params),
        }
        with open(os.environ["PARTITIONS_DIR"] + f"/rank{os.environ['RANK']}.json", "w") as f:
            json.dump(out, f)


@hookimpl
def martlet_callbacks():
    yield CallbackRecord(name="partitions", impl=f"{__name__}:Partitions", summary="sizes")
"""


@pytest.fixture(scope="module")
def zero3_offload(tiny: str, shared) -> Path:
    """Two ZeRO-3 processes, optimizer and parameters offloaded to the CPU, LoRA, 4 steps of
    2 × 1 row × 2 accumulated micro-batches, a checkpoint at step 2; the partitions plugin
    writes each rank's sizes to ``partitions/`` beside the run."""

    def make(root: Path) -> None:
        root.mkdir()
        plugin = root / "partitions_plugin.py"
        plugin.write_text(PARTITIONS)
        (root / "partitions").mkdir()
        result = martlet(
            "--plugin", str(plugin), "sft", "--model", tiny, *COMMON,
            "--per-device-train-batch-size", "1", "--gradient-accumulation-steps", "2",
            "--nproc-per-node", "2", "--deepspeed", "zero3_offload", "--save-steps", "2",
            "--report-to", "partitions", "--output-dir", str(root / "run"),
            env={"PARTITIONS_DIR": str(root / "partitions")},
        )  # fmt: skip
        assert result.returncode == 0, result.stderr

    return shared("zero3-offload", make) / "run"


def test_zero2_alone_selects_deepspeed_and_trains_lora_like_one_process(
    tiny, lora_one, deepspeed_imported, tmp_path
):
    two = tmp_path / "two"
    result = martlet(
        "sft", "--model", tiny, *COMMON, *TWO, "--deepspeed", "zero2", "--output-dir", str(two)
    )
    assert result.returncode == 0, result.stderr
    assert "Setting accelerator to CPU" not in result.stdout  # DeepSpeed's guess, dropped
    assert curve(two) == pytest.approx(curve(lora_one), abs=1e-5)
    assert len(curve(two)) == 2 * 4
    assert_same_tensors(two / "adapter_model.safetensors", lora_one / "adapter_model.safetensors")
    import yaml

    config = yaml.safe_load((two / "config.yaml").read_text())
    assert config["parallel"] == {"name": "deepspeed", "deepspeed": "zero2"}
    # a normal run directory: it merges and exports, without DeepSpeed (not even imported)
    merged = tmp_path / "merged"
    export, imported = deepspeed_imported(
        "export", "--adapters", str(two), "--merge-lora", "--output-dir", str(merged)
    )
    assert export.returncode == 0, export.stderr
    assert imported == []
    assert any(merged.glob("*.safetensors"))


def test_zero3_with_offload_trains_like_one_process_on_partitions(lora_one, zero3_offload):
    assert curve(zero3_offload) == pytest.approx(curve(lora_one), abs=1e-5)
    assert_same_tensors(
        zero3_offload / "adapter_model.safetensors",
        lora_one / "adapter_model.safetensors",
        **ROUNDING,
    )
    configs = [
        json.loads((run / "adapter_config.json").read_text()) for run in (lora_one, zero3_offload)
    ]
    for config in configs:
        config["target_modules"] = sorted(config["target_modules"])
    assert configs[0] == configs[1]
    ranks = [
        json.loads((zero3_offload.parent / "partitions" / f"rank{r}.json").read_text())
        for r in (0, 1)
    ]
    for part in ranks:
        assert part["optimizer"] == "DeepSpeedCPUAdam"  # ZeRO-Offload's optimizer
        assert part["zero"] == "DeepSpeedZeroOptimizer_Stage3"
        assert part["params"] > 0
        # each rank holds about half of the parameters (small ones are kept whole)
        assert part["local"] < 0.75 * part["whole"]
    assert ranks[0]["local"] + ranks[1]["local"] >= ranks[0]["whole"]


def test_a_deepspeed_checkpoint_resumes_on_deepspeed(tiny, lora_one, zero3_offload, tmp_path):
    checkpoint = zero3_offload / "checkpoint-2"
    assert (checkpoint / "adapter_model.safetensors").is_file()
    again = tmp_path / "again"
    resumed = martlet(
        "sft", "--model", tiny, *COMMON, *TWO, "--deepspeed", "zero3_offload",
        "--output-dir", str(again), "--resume-from-checkpoint", str(checkpoint),
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stdout
    assert curve(again) == pytest.approx(curve(lora_one)[4:], abs=1e-5)  # steps 3 and 4
    assert_same_tensors(
        again / "adapter_model.safetensors", lora_one / "adapter_model.safetensors", **ROUNDING
    )


PROBE = """
import json
import os
import sys

from martlet import hookimpl
from martlet.records import CallbackRecord


class Probe:
    def __init__(self, **options):
        pass

    def on_log(self, step, metrics):
        pass

    def on_end(self):
        out = os.environ["PROBE_DIR"] + f"/rank{os.environ.get('RANK', '0')}.json"
        with open(out, "w") as f:
            json.dump(sorted(m for m in sys.modules if m.split(".")[0] == "deepspeed"), f)


@hookimpl
def martlet_callbacks():
    yield CallbackRecord(name="probe", impl=f"{__name__}:Probe", summary="imported modules")
"""


def test_a_deepspeed_checkpoint_resumes_on_ddp_which_never_imports_deepspeed(
    tiny, lora_one, zero3_offload, tmp_path
):
    """The checkpoint holds what one process saves, so DDP resumes it; and a run that does not
    use DeepSpeed never imports it (accelerate's unwrapping, in every loss and save, would
    import it just to ask whether the model is a DeepSpeedEngine): no start-up cost, no
    "Setting accelerator to CPU" notice."""
    plugin = tmp_path / "probe_plugin.py"
    plugin.write_text(PROBE)
    probes = tmp_path / "probes"
    probes.mkdir()
    run = tmp_path / "ddp"
    resumed = martlet(
        "--plugin", str(plugin), "sft", "--model", tiny, *COMMON, *TWO, "--parallel", "ddp",
        "--save-steps", "3", "--report-to", "probe", "--output-dir", str(run),
        "--resume-from-checkpoint", str(zero3_offload / "checkpoint-2"),
        env={"PROBE_DIR": str(probes)},
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert curve(run) == pytest.approx(curve(lora_one)[4:], abs=1e-5)
    assert (run / "checkpoint-3").is_dir()
    assert "Setting accelerator to CPU" not in resumed.stdout + resumed.stderr
    ranks = sorted(probes.glob("rank*.json"))
    assert [p.name for p in ranks] == ["rank0.json", "rank1.json"]
    for probe in ranks:  # read after the steps, a checkpoint and the final save
        assert json.loads(probe.read_text()) == [], probe.name


def test_one_process_zero2_offload_resumes_a_two_process_zero3_checkpoint(
    tiny, lora_one, zero3_offload, tmp_path
):
    """DeepSpeed on one process (ZeRO-Offload's usual home: one GPU), stage 2 with the
    optimizer on DeepSpeed's CPU Adam, from two ZeRO-3 processes' checkpoint: steps 3 and 4
    as one process takes them."""
    run = tmp_path / "alone"
    resumed = martlet(
        "sft", "--model", tiny, *COMMON, "--per-device-train-batch-size", "4",
        "--deepspeed", "zero2_offload", "--output-dir", str(run),
        "--resume-from-checkpoint", str(zero3_offload / "checkpoint-2"),
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stdout
    assert curve(run) == pytest.approx(curve(lora_one)[4:], abs=1e-5)
    assert_same_tensors(
        run / "adapter_model.safetensors", lora_one / "adapter_model.safetensors", **ROUNDING
    )


def test_a_one_process_checkpoint_resumes_on_zero1(tiny, lora_one, tmp_path):
    """One process's optimizer state (torch's AdamW layout) loads into ZeRO's partitions."""
    run = tmp_path / "zero1"
    resumed = martlet(
        "sft", "--model", tiny, *COMMON, *TWO, "--parallel", "deepspeed", "--deepspeed", "zero1",
        "--output-dir", str(run), "--resume-from-checkpoint", str(lora_one / "checkpoint-2"),
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert curve(run) == pytest.approx(curve(lora_one)[4:], abs=1e-5)
    assert_same_tensors(run / "adapter_model.safetensors", lora_one / "adapter_model.safetensors")


def test_zero3_trains_the_full_model_like_one_process(tiny, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    # the run's schedule (warm-up, then cosine) drives the engine's optimizer
    schedule = ("--lr-scheduler-type", "cosine", "--warmup-ratio", "0.34")
    full = (*BASE[:-2], *schedule, "--tuner", "full", "--learning-rate", "1e-4", "--max-steps", "3")
    single = martlet(
        "sft", "--model", tiny, *full, "--per-device-train-batch-size", "4",
        "--output-dir", str(one),
    )  # fmt: skip
    assert single.returncode == 0, single.stderr
    zero3 = martlet(
        "sft", "--model", tiny, *full, *TWO, "--deepspeed", "zero3", "--output-dir", str(two)
    )
    assert zero3.returncode == 0, zero3.stderr
    assert curve(two) == pytest.approx(curve(one), abs=1e-5)
    rates = curve(two, ["learning_rate"])
    assert rates == curve(one, ["learning_rate"]) and len(set(rates)) == 3
    assert_same_tensors(two / "model.safetensors", one / "model.safetensors", **ROUNDING)


def test_bf16_on_a_cpu_trains_like_one_process(tiny, tmp_path):
    """bf16 frozen weights under bf16 autocast (a CPU that computes bf16 natively)."""
    one, two = tmp_path / "one", tmp_path / "two"
    bf16 = (*COMMON[:-2], "--max-steps", "2", "--mixed-precision", "bf16")
    env = {"MARTLET_CPU_BF16": "1"}
    single = martlet(
        "sft", "--model", tiny, *bf16, "--per-device-train-batch-size", "4",
        "--output-dir", str(one), env=env,
    )  # fmt: skip
    assert single.returncode == 0, single.stderr
    assert "bfloat16 weights" in single.stdout
    zero2 = martlet(
        "sft", "--model", tiny, *bf16, *TWO, "--deepspeed", "zero2", "--output-dir", str(two),
        env=env,
    )  # fmt: skip
    assert zero2.returncode == 0, zero2.stderr
    assert curve(two) == pytest.approx(curve(one), rel=2e-2)
    want = tensors(one / "adapter_model.safetensors")
    got = tensors(two / "adapter_model.safetensors")
    assert {k: t.dtype for k, t in got.items()} == {k: t.dtype for k, t in want.items()}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--deepspeed", "zero4"), "--deepspeed zero4: no such preset or file"),
        (("--deepspeed", "missing.json"), "--deepspeed missing.json: no such preset or file"),
        (("--deepspeed", "zero2", "--mixed-precision", "fp16"), "does not train in fp16"),
        (("--deepspeed", "zero3", "--optim", "sgd"), "--optim sgd does not train under"),
        (("--deepspeed", "zero2", "--tuner", "adalora"), "--tuner adalora does not train"),
    ],
)
def test_deepspeed_mistakes_fail_before_anything_starts(tiny, tmp_path, args, message):
    result = martlet(
        "sft", "--model", tiny, "--dataset", "sample-sft#4", "--nproc-per-node", "2",
        "--device", "cpu", *args, "--output-dir", str(tmp_path / "run"),
    )  # fmt: skip
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert not (tmp_path / "run" / "config.yaml").exists()
