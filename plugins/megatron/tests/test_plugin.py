"""martlet-megatron on a machine without CUDA: the strategy lists and passes its contract, its
options are validated with clear errors, `martlet sft --parallel megatron` is refused before
anything loads; what needs GPUs is at the end (skipped here; tests/gpu/megatron.sh)."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import pytest
from martlet.errors import ConfigError
from martlet_sdk.contracts import ParallelContract
from martlet_sdk.testing import logged
from martlet_sdk.testing import run_cli as martlet

PLUGINS = ("megatron", "train", "hf", "data", "peft", "accel")


class TestMegatronContract(ParallelContract):
    @pytest.fixture
    def plugin(self):
        return "megatron"

    @pytest.fixture
    def record_name(self):
        return "megatron"


@pytest.fixture
def cli(martlet_manager, martlet_cli):
    martlet_manager(*PLUGINS)
    return martlet_cli


@pytest.fixture
def no_cuda():
    import torch

    if torch.cuda.is_available():
        pytest.skip("checks what happens without a CUDA GPU")


def test_listed_with_honest_capabilities(cli):
    from martlet.registry import records

    result = cli("plugins", "--kind", "parallel_strategies", "--json")
    assert result.exit_code == 0, result.output
    plugin = next(p for p in json.loads(result.stdout) if p["name"] == "megatron")
    assert plugin["status"] == "ok"
    assert plugin["records"] == {"parallel_strategies": ["megatron"]}
    commands = json.loads(cli("plugins", "--kind", "commands", "--json").stdout)
    assert next(p for p in commands if p["name"] == "megatron")["records"] == {
        "commands": ["megatron"]
    }
    record = next(r for r in records("parallel_strategies") if r.name == "megatron")
    assert record.multi_process and record.requires == ()
    assert {"cuda", "nccl", "tensor-parallel", "full"} <= set(record.capabilities)
    assert not {"cpu", "adapter", "pipeline-parallel"} & set(record.capabilities)
    doctor = cli("doctor")
    line = next(x for x in doctor.output.splitlines() if x.strip().startswith("megatron "))
    assert "tensor-parallel" in line and "cuda" in line
    result = cli("sft", "--parallel", "megatron", "--help")
    assert result.exit_code == 0, result.output
    for flag in (
        "--tensor-model-parallel-size",
        "--pipeline-model-parallel-size",
        "--context-parallel-size",
        "--sequence-parallel",
    ):
        assert flag in result.output


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--tensor-model-parallel-size", "0"], "--tensor-model-parallel-size must be a whole"),
        (["--pipeline-model-parallel-size", "-1"], "--pipeline-model-parallel-size must be"),
        (["--context-parallel-size", "0"], "--context-parallel-size must be"),
        (["--sequence-parallel"], "--sequence-parallel needs --tensor-model-parallel-size 2"),
        (
            ["--nproc-per-node", "3", "--tensor-model-parallel-size", "2"],
            "3 processes cannot hold tensor × pipeline × context parallel groups of 2 × 1 × 1",
        ),
        (
            ["--nproc-per-node", "4", "--tensor-model-parallel-size", "4"],
            "--tensor-model-parallel-size 4 does not divide the model's 2 key/value heads",
        ),
        (
            ["--nproc-per-node", "3", "--pipeline-model-parallel-size", "3"],
            "--pipeline-model-parallel-size 3 does not divide the model's 4 layers",
        ),
    ],
)
def test_options_are_validated_before_anything_loads(cli, llama, tmp_path, flags, message):
    out = tmp_path / "run"
    result = cli(
        "sft", "--model", str(llama), "--parallel", "megatron", "--dataset", "sample-sft#4",
        "--output-dir", str(out), *flags,
    )  # fmt: skip
    assert result.exit_code != 0
    assert message in result.output, result.output
    assert not out.exists()


def test_a_model_family_megatron_cannot_take_is_refused(cli, tmp_path):
    gpt2 = tmp_path / "gpt2"
    gpt2.mkdir()
    (gpt2 / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    result = cli(
        "sft", "--model", str(gpt2), "--parallel", "megatron", "--nproc-per-node", "2",
        "--dataset", "sample-sft#4", "--output-dir", str(tmp_path / "run"),
    )  # fmt: skip
    assert result.exit_code != 0
    assert "the megatron conversion does not support model type 'gpt2'" in result.output


def test_sft_fails_fast_without_cuda(no_cuda, llama, tmp_path):
    """Through a real `martlet` process, as users run it: one clear message, no traceback,
    nothing written, nothing loaded."""
    out = tmp_path / "run"
    start = time.perf_counter()
    result = martlet(
        "sft", "--model", str(llama), "--parallel", "megatron", "--nproc-per-node", "2",
        "--tensor-model-parallel-size", "2", "--tuner", "full", "--dataset", "sample-sft#4",
        "--output-dir", str(out),
    )  # fmt: skip
    seconds = time.perf_counter() - start
    assert result.returncode != 0, result.stdout + result.stderr
    assert "--parallel megatron needs CUDA GPUs" in result.stderr
    assert "Megatron-Core needs CUDA GPUs and NCCL" in result.stderr
    assert "use --parallel fsdp or deepspeed" in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()
    assert seconds < 60, f"took {seconds:.0f}s to refuse"


def config(**values):
    base = dict(
        tensor_model_parallel_size=2, pipeline_model_parallel_size=1, context_parallel_size=1,
        sequence_parallel=False, world_size=2, model="", tuner="full",
        quant_method=None, mixed_precision="bf16", device=None,
    )  # fmt: skip
    return SimpleNamespace(**{**base, **values})


@pytest.fixture
def machine_with_cuda(monkeypatch):
    """What check() says past the CUDA and megatron-core checks (as on a GPU machine)."""
    from martlet_megatron import strategy

    monkeypatch.setattr(strategy, "require_cuda", lambda device=None: None)
    monkeypatch.setattr(strategy, "require_megatron_core", lambda: None)
    return strategy.Megatron


@pytest.mark.parametrize(
    ("values", "message", "fix"),
    [
        (dict(tuner="lora"), "trains every weight, not --tuner lora", "--tuner full"),
        (dict(quant_method="bnb"), "does not train quantized models", "drop --quant-method"),
        (dict(split_dataset_ratio=0.1), "does not evaluate during training", "martlet eval"),
        (dict(val_dataset=["x"]), "does not evaluate during training", "--val-dataset"),
        (dict(mixed_precision="fp16"), "does not train in fp16", "--mixed-precision bf16"),
        (
            dict(pipeline_model_parallel_size=2, world_size=4),
            "--pipeline-model-parallel-size above 1 is not trained",
            "megatron convert",
        ),
        (
            dict(context_parallel_size=2, world_size=4),
            "--context-parallel-size above 1 is not trained",
            "--tensor-model-parallel-size",
        ),
    ],
)
def test_what_the_strategy_does_not_train_is_refused_on_a_gpu_machine(
    machine_with_cuda, values, message, fix
):
    with pytest.raises(ConfigError, match=message) as error:
        machine_with_cuda.check(config(**values))
    assert fix in error.value.fix
    machine_with_cuda.check(config())  # and a config it trains passes


def test_without_megatron_core_it_says_what_to_install(monkeypatch):
    import importlib.util

    from martlet_megatron import strategy

    monkeypatch.setattr(strategy, "require_cuda", lambda device=None: None)
    real = importlib.util.find_spec
    monkeypatch.setattr(
        strategy.importlib.util,
        "find_spec",
        lambda name, *a: None if name.startswith("megatron") else real(name, *a),
    )
    with pytest.raises(ConfigError, match="needs Megatron-Core, which is not installed") as e:
        strategy.Megatron.check(config())
    assert "pip install megatron-core" in e.value.fix


def test_without_cuda_the_strategy_refuses_a_cpu_device(no_cuda):
    from martlet_megatron.strategy import Megatron, require_cuda

    with pytest.raises(ConfigError, match="needs CUDA GPUs") as error:
        require_cuda("cpu")
    assert "fsdp or deepspeed" in error.value.fix
    with pytest.raises(ConfigError, match="Megatron-Core needs CUDA GPUs"):
        Megatron(tensor_model_parallel_size=2).accelerator_kwargs(world_size=2, device="cpu")


# ---------------------------------------------------------------------- on CUDA GPUs


@pytest.fixture
def one_gpu():
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU (tests/gpu/megatron.sh)")
    pytest.importorskip("megatron.core", reason="needs megatron-core (pip install megatron-core)")


@pytest.fixture
def two_gpus():
    import torch

    if not torch.cuda.is_available() or torch.cuda.device_count() < 2:
        pytest.skip("needs 2 CUDA GPUs (tests/gpu/megatron.sh)")
    pytest.importorskip("megatron.core", reason="needs megatron-core (pip install megatron-core)")


BASE = (
    "--tuner", "full", "--dataset", "sample-sft#32", "--logging-steps", "1", "--seed", "7",
    "--lr-scheduler-type", "constant", "--learning-rate", "1e-2", "--device", "cuda",
    "--mixed-precision", "no", "--torch-dtype", "float32", "--max-grad-norm", "1.0",
    # Adam's first steps move each weight by about lr × sign(gradient), which rounding flips
    # for gradients near 0: a large epsilon makes the updates follow the gradients smoothly
    "--adam-epsilon", "1e-3",
)  # fmt: skip
TRAIN = (*BASE, "--max-steps", "4")
TP2 = ("--nproc-per-node", "2", "--parallel", "megatron", "--tensor-model-parallel-size", "2")


@pytest.mark.gpu
@pytest.mark.slow
def test_megatron_core_on_one_gpu_trains_like_the_hf_model(one_gpu, make_model, tmp_path):
    """One process through Megatron-Core's GPTModel (Transformer Engine's layers where
    installed) against the HF model itself: the same losses, gradient norms and result."""
    from martlet_sdk.testing import assert_same_tensors

    model = make_model("qwen2")
    plain, mcore = tmp_path / "plain", tmp_path / "mcore"
    one = martlet(
        "sft", "--model", str(model), *TRAIN, "--per-device-train-batch-size", "4",
        "--output-dir", str(plain),
    )  # fmt: skip
    assert one.returncode == 0, one.stderr
    run = martlet(
        "sft", "--model", str(model), *TRAIN, "--per-device-train-batch-size", "4",
        "--parallel", "megatron", "--output-dir", str(mcore),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert logged(mcore) == pytest.approx(logged(plain), rel=2e-3)
    assert_same_tensors(
        mcore / "model.safetensors", plain / "model.safetensors", rtol=1e-3, atol=1e-4
    )


@pytest.mark.gpu
@pytest.mark.slow
def test_tensor_parallel_training_matches_one_process(two_gpus, llama, tmp_path):
    """TP=2 on 2 GPUs trains like one process with the same global batch: the same losses
    and gradient norms, and the saved model (HF files) is the same."""
    from martlet_sdk.testing import assert_same_tensors

    one, two = tmp_path / "one", tmp_path / "two"
    single = martlet(
        "sft", "--model", str(llama), *TRAIN, "--per-device-train-batch-size", "4",
        "--output-dir", str(one),
    )  # fmt: skip
    assert single.returncode == 0, single.stderr
    parallel = martlet(
        "sft", "--model", str(llama), *TRAIN, "--per-device-train-batch-size", "2", *TP2,
        "--output-dir", str(two),
    )  # fmt: skip
    assert parallel.returncode == 0, parallel.stderr
    assert logged(two) == pytest.approx(logged(one), rel=2e-3)
    assert_same_tensors(two / "model.safetensors", one / "model.safetensors", rtol=1e-3, atol=1e-4)


@pytest.mark.gpu
@pytest.mark.slow
def test_a_tensor_parallel_checkpoint_resumes_on_one_process(two_gpus, make_model, tmp_path):
    """Checkpoints hold whole HF tensors and one process's optimizer layout: a TP=2 run's
    checkpoint (Qwen2, tied embeddings) resumes on one process, ending where an uninterrupted
    one-process run ends."""
    from martlet_sdk.testing import assert_same_tensors

    model = make_model("qwen2", tied=True)
    whole, out = tmp_path / "whole", tmp_path / "run"
    straight = martlet(
        "sft", "--model", str(model), *TRAIN, "--per-device-train-batch-size", "4",
        "--output-dir", str(whole),
    )  # fmt: skip
    assert straight.returncode == 0, straight.stderr
    first = martlet(
        "sft", "--model", str(model), *BASE, "--max-steps", "2", "--save-steps", "2",
        "--per-device-train-batch-size", "2", *TP2, "--output-dir", str(out),
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    resumed = martlet(
        "sft", "--model", str(model), *TRAIN, "--per-device-train-batch-size", "4",
        "--resume-from-checkpoint", "auto", "--output-dir", str(out),
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert_same_tensors(
        out / "model.safetensors", whole / "model.safetensors", rtol=1e-3, atol=1e-4
    )
