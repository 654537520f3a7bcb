# Sourced (not run) by tests/gpu/gptq.sh and tests/gpu/awq.sh, which set METHOD (gptq, awq)
# first: the set-up and the steps the GPU checks of the two gptqmodel quantizers share.
#
# Sets ROOT, PY (default: .venv/bin/python at the repository root), MARTLET, OUT (default: a
# new temporary folder) and GPTQMODEL_CPU_WORKERS, and moves to the repository root.
# shellcheck shell=bash

ROOT="${MARTLET_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && git rev-parse --show-toplevel 2>/dev/null || pwd)}"
PY="${PY:-$ROOT/.venv/bin/python}"
MARTLET="${MARTLET:-$(dirname "$PY")/martlet}"
OUT="${OUT:-$(mktemp -d)}"
export GPTQMODEL_CPU_WORKERS="${GPTQMODEL_CPU_WORKERS:-2}"
cd "$ROOT"

# gptqmodel_check_start MODULE...: exits 0 ("skipped") where $PY sees no CUDA GPU, 2 where one
# of the modules (dotted names too: optimum.gptq) is not installed; else prints the versions.
gptqmodel_check_start() {
    if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
        echo "RESULT $METHOD gpu_check: skipped (no CUDA GPU for $PY)"
        exit 0
    fi
    local missing
    missing=$("$PY" - "$@" <<'EOF'
import importlib.util, sys

def found(name):
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # a dotted name whose parent is missing
        return False

print(" ".join(n for n in sys.argv[1:] if not found(n)))
EOF
    )
    if [ -n "$missing" ]; then
        echo "RESULT $METHOD gpu_check: FAILED (not installed in $PY: $missing)"
        exit 2
    fi
    "$PY" -c "import torch, gptqmodel, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0), 'gptqmodel', gptqmodel.__version__, 'transformers', transformers.__version__)"
}

# gptqmodel_cli_export FLAG...: `martlet export` of $OUT/tiny on the GPU with these flags (and
# --dataset sample-sft), into $OUT/cli, with its perplexity report
gptqmodel_cli_export() {
    "$MARTLET" export --model "$OUT/tiny" --device cuda --quant-method "$METHOD" \
        --dataset sample-sft "$@" --output-dir "$OUT/cli" --overwrite 2>"$OUT/cli.log" | tail -2
    "$PY" -c "import json; r=json.load(open('$OUT/cli/quantization.json')); print('RESULT $METHOD martlet export --device cuda:', r)"
}

# gptqmodel_smollm2 FLAG...: the embedded SmolLM2-135M, when installed: exported on the GPU with
# these flags into $OUT/smol, then asked a question
gptqmodel_smollm2() {
    if "$PY" -c "import martlet; martlet.load_tokenizer('smollm2-135m-instruct')" 2>/dev/null; then
        local start
        start=$(date +%s)
        "$MARTLET" export --model smollm2-135m-instruct --device cuda --quant-method "$METHOD" \
            "$@" --output-dir "$OUT/smol" --overwrite 2>"$OUT/smol.log" | tail -2
        echo "RESULT $METHOD smollm2-135m export on cuda: $(( $(date +%s) - start ))s, $(du -sh "$OUT/smol" | cut -f1)"
        "$MARTLET" infer --model "$OUT/smol" --device cuda --query "What is the capital of France?" 2>/dev/null | tail -3
    fi
}

# gptqmodel_vllm FOLDER: vLLM serves $OUT/smol (else $OUT/FOLDER), when installed; then the
# check's last line
gptqmodel_vllm() {
    if "$PY" -c "import vllm" 2>/dev/null; then
        METHOD="$METHOD" FALLBACK="$1" OUT="$OUT" "$PY" - <<'EOF'
import os
from vllm import LLM, SamplingParams
out = os.environ["OUT"]
folder = os.path.join(out, "smol" if os.path.isdir(os.path.join(out, "smol")) else os.environ["FALLBACK"])
llm = LLM(folder, max_model_len=512, gpu_memory_utilization=0.3, enforce_eager=True)
result = llm.generate(["The capital of France is"], SamplingParams(max_tokens=8, temperature=0))
print("RESULT", os.environ["METHOD"], "vllm", llm.llm_engine.model_config.quantization, repr(result[0].outputs[0].text))
EOF
    else
        echo "RESULT $METHOD vllm: skipped (vllm not installed)"
    fi
    echo "RESULT $METHOD gpu_check: passed ($OUT)"
}
