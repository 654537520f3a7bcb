"""Megatron-Core's GPTModel itself (local layers, gloo, tensor parallel over processes on this
CPU) computes the Hugging Face model's logits from the converted weights. Skipped where
megatron-core is not importable: in this interpreter, or in the one MARTLET_MCORE_PYTHON names
(an environment with megatron-core, torch, transformers, safetensors, pluggy and pyyaml; the
repository's sources are put on its path)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).with_name("mcore_cpu_check.py")


@pytest.fixture(scope="module")
def mcore_python() -> tuple[str, dict[str, str]]:
    import martlet
    import martlet_megatron
    import martlet_sdk

    python = os.environ.get("MARTLET_MCORE_PYTHON") or sys.executable
    roots = [
        Path(m.__file__).resolve().parent.parent for m in (martlet, martlet_megatron, martlet_sdk)
    ]
    path = os.pathsep.join([*map(str, roots), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    probe = subprocess.run(
        [python, "-c", "import megatron.core, transformers"],
        capture_output=True,
        text=True,
        env=env,
    )
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        pytest.skip(
            f"megatron-core is not importable by {python} ({last}); set MARTLET_MCORE_PYTHON "
            "to an interpreter that has it"
        )
    return python, env


@pytest.mark.parametrize(
    ("family", "tied", "tp"),
    [("llama", False, 2), ("qwen2", True, 2), ("mistral", False, 1)],
    ids=["llama-tp2", "qwen2-tied-tp2", "mistral-tp1"],
)
def test_megatron_cores_gpt_model_computes_the_hf_logits(
    mcore_python, make_model, family, tied, tp
):
    python, env = mcore_python
    folder = make_model(family, tied=tied)
    run = subprocess.run(
        [python, str(SCRIPT), str(folder), str(tp)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    line = next(x for x in run.stdout.splitlines() if x.startswith("max-abs-diff"))
    assert float(line.split()[1]) < 1e-5, run.stdout


TRAIN_SCRIPT = Path(__file__).with_name("mcore_cpu_train_check.py")


@pytest.mark.parametrize(
    ("family", "tied", "tp", "extra"),
    [
        ("llama", False, 2, ()),
        ("llama", False, 1, ()),
        ("qwen2", True, 2, ()),
        ("llama", False, 2, ("packed",)),
    ],
    ids=["llama-tp2", "llama-dp2", "qwen2-tied-tp2", "llama-tp2-packed"],
)
def test_the_strategys_step_on_two_processes_matches_one_process(
    mcore_python, make_model, family, tied, tp, extra
):
    """The strategy's hooks (prepare, the wrapper's forward and backward, clip_grad_norm,
    the step's gradient sync, saving, optimizer_state_dict and load_optimizer_state_dict) on
    two gloo processes: tensor parallel 2, or data parallel 2; padded or packed rows."""
    python, env = mcore_python
    folder = make_model(family, tied=tied)
    run = subprocess.run(
        [python, str(TRAIN_SCRIPT), str(folder), str(tp), *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    assert run.stdout.splitlines()[-1] == "ok", run.stdout
