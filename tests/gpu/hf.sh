#!/usr/bin/env bash
# martlet-hf on a CUDA machine: the embedded model loads in bfloat16 on the GPU and answers.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
$PY -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))"
$PY -m pytest plugins/hf/tests/test_gpu.py -q -rs 2>&1 | tee /tmp/hf-gpu.log
! grep -q "SKIPPED" /tmp/hf-gpu.log
