#!/usr/bin/env bash
# The accelerator contract on a CUDA machine: nothing may skip for cuda.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
$PY -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))"
$PY -m pytest plugins/accel -q -rs -k "cuda or doctor" 2>&1 | tee /tmp/accel-gpu.log
! grep -q "SKIPPED.*no cuda device" /tmp/accel-gpu.log
