#!/usr/bin/env bash
# The liger kernel on a CUDA machine: liger-kernel installed, a bfloat16 tiny Llama's loss with
# Liger's kernels equal to its own layers'. Nothing may skip for cuda.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
$PY -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))"
$PY -m pip install --quiet liger-kernel
$PY -m pytest plugins/kernels/tests/test_kernels.py -q -rs -k liger 2>&1 | tee /tmp/kernels-gpu.log
! grep -q "SKIPPED.*no cuda device" /tmp/kernels-gpu.log
! grep -q "SKIPPED.*liger-kernel" /tmp/kernels-gpu.log
grep -q "passed" /tmp/kernels-gpu.log
