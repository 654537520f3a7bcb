#!/usr/bin/env bash
# Fused LoRA layers on a CUDA machine: the same step as PEFT's modules, dropout masks drawn on
# the device and fixed by the seed. Nothing may skip for cuda.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
$PY -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))"
$PY -m pytest plugins/peft/tests/test_fused.py -q -rs -k cuda 2>&1 | tee /tmp/peft-gpu.log
! grep -q "SKIPPED.*no cuda device" /tmp/peft-gpu.log
grep -q "1 passed" /tmp/peft-gpu.log
