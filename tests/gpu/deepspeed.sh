#!/usr/bin/env bash
# The deepspeed strategy on a CUDA machine with at least two GPUs: martlet-deepspeed's tests,
# whose runs choose cuda themselves there (no --device), so 2 processes talk over nccl —
# ZeRO-2, ZeRO-3 and ZeRO-3 offload (DeepSpeed's CPU Adam, compiled on first use: it needs
# the CUDA toolkit's headers) against one process, checkpoints, export. Nothing may skip.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
$PY -c "import torch; n = torch.cuda.device_count(); assert n >= 2, f'{n} CUDA devices: 2 needed'; print(n, 'x', torch.cuda.get_device_name(0))"
$PY -m pytest plugins/deepspeed -q -rs -p no:xdist 2>&1 | tee /tmp/deepspeed-gpu.log
! grep -q "SKIPPED" /tmp/deepspeed-gpu.log
grep -q " passed" /tmp/deepspeed-gpu.log && ! grep -q " failed" /tmp/deepspeed-gpu.log
