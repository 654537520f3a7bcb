#!/usr/bin/env bash
# The megatron parallel strategy on CUDA GPUs: what the CPU tests (plugins/megatron/tests)
# cannot check.
#
#   bash tests/gpu/megatron.sh            # from the repository root, .venv installed
#
# Needs: CUDA GPUs (2 for the tensor parallel checks; with 1 they skip and say so), the
# repo's .venv (martlet-megatron, -train, -hf, -data, -peft, -accel installed), and
# megatron-core, which this script installs into .venv with torch held (Transformer Engine is
# optional: where installed, its layer spec is used; without it Megatron-Core's local layers).
# Checks: Megatron-Core's GPTModel on the converted weights computes the HF logits (gloo, as
# on a CPU); one GPU through `--parallel megatron` trains like the HF model (same losses,
# gradient norms and saved weights); with 2 GPUs, tensor parallel 2 trains like one process
# with the same global batch, and its checkpoint (whole HF tensors, one process's optimizer
# layout) resumes on one process where an uninterrupted run ends. A few minutes.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT
"$PY" - <<'PYEOF'
import torch
assert torch.cuda.is_available(), "no CUDA GPU: this check needs one"
print(f"GPUs: {torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}; torch {torch.__version__}")
PYEOF
TORCH=$("$PY" -c "import torch; print(torch.__version__.split('+')[0])")
"$PY" -m pip install --quiet "megatron-core>=0.13" "torch==$TORCH"
"$PY" -c "import megatron.core as m; print('megatron-core', m.__version__)"
"$PY" -m pytest plugins/megatron/tests -q -rs -p no:cacheprovider 2>&1 | tee "$LOG"
! grep -q "SKIPPED.*megatron-core is not importable" "$LOG"
! grep -q "SKIPPED.*needs a CUDA GPU" "$LOG"
! grep -qE "[0-9]+ failed" "$LOG"
grep -q "passed" "$LOG"
if grep -q "SKIPPED.*needs 2 CUDA GPUs" "$LOG"; then
    echo "megatron GPU check: passed on one GPU; the tensor parallel checks need 2 GPUs"
else
    echo "megatron GPU check: all passed"
fi
