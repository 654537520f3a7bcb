#!/usr/bin/env bash
# DDP and FSDP over NCCL on a machine with two or more CUDA GPUs: `martlet sft
# --nproc-per-node 2 --parallel ddp|fsdp --device cuda` trains the tiny model like one GPU with
# the same global batch (LoRA and full fine-tuning), the process group is nccl (the cuda
# accelerator record's backend), and the sharded run saves the files one process writes.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
$PY -c "import torch; n = torch.cuda.device_count(); assert n >= 2, f'needs 2 CUDA GPUs, found {n}'; print(n, 'x', torch.cuda.get_device_name(0))"
$PY -m martlet doctor | tee /tmp/dist-gpu-doctor.log
grep -q "nccl" /tmp/dist-gpu-doctor.log
$PY - <<'PY'
import json
import tempfile
from pathlib import Path

import torch
from martlet_sdk.testing import logged, run_cli
from martlet_sdk.tiny import tiny_model_dir
from safetensors.torch import load_file

work = Path(tempfile.mkdtemp(prefix="martlet-dist-gpu-"))
tiny = str(tiny_model_dir(work / "tiny"))
common = ("--model", tiny, "--dataset", "sample-sft#32", "--logging-steps", "1", "--seed", "7",
          "--lr-scheduler-type", "constant", "--max-steps", "4", "--device", "cuda",
          "--mixed-precision", "no")


def run(name, *args):
    out = work / name
    result = run_cli("sft", *common, *args, "--output-dir", str(out), timeout=900)
    assert result.returncode == 0, result.stderr
    return out


for tuner, lr, saved in (("lora", "1e-3", "adapter_model.safetensors"),
                         ("full", "1e-4", "model.safetensors")):
    if tuner == "lora":
        lr = (lr, "--lora-dropout", "0")  # the same dropout masks on every rank: none
    else:
        lr = (lr,)
    one = run(f"{tuner}-one", "--tuner", tuner, "--learning-rate", *lr,
              "--per-device-train-batch-size", "4")
    for parallel in ("ddp", "fsdp"):
        two = run(f"{tuner}-{parallel}", "--tuner", tuner, "--learning-rate", *lr,
                  "--per-device-train-batch-size", "2", "--nproc-per-node", "2",
                  "--parallel", parallel)
        a, b = logged(one), logged(two)
        assert all(abs(x - y) <= 1e-3 * abs(y) for x, y in zip(b, a)), (parallel, tuner, a, b)
        want, got = load_file(str(one / saved)), load_file(str(two / saved))
        assert sorted(want) == sorted(got)
        for key, tensor in want.items():
            assert float((got[key] - tensor).norm()) <= 5e-2 * float(tensor.norm()) + 1e-6, key
        print(f"{tuner} {parallel}: 2 GPUs like 1 over nccl:", [round(x, 5) for x in b])
PY
echo "dist.sh: ddp and fsdp over nccl passed"
