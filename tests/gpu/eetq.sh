#!/usr/bin/env bash
# EETQ on a CUDA GPU: what the CPU tests (plugins/eetq/tests) cannot check.
#
#   bash tests/gpu/eetq.sh            # from the repository root, .venv installed
#
# Needs: a CUDA GPU, the repo's .venv with martlet-eetq, -hf, -train, -data, -peft installed,
# and EETQ's kernels: with transformers 5 the `kernels` package fetches
# kernels-community/quantization-eetq from the Hugging Face Hub on the first load (so the Hub
# must be reachable once, or that kernel already in the Hub cache); with transformers 4 the
# eetq package built from source (git clone https://github.com/NetEase-FuXi/EETQ.git && cd EETQ
# && git submodule update --init --recursive && pip install .).
# Checks, on the SDK's tiny Llama in float16: the linear layers load as EETQ int8 layers and
# compute within 5% of the float16 model (and much closer than another random model); a LoRA
# run through `martlet sft --quant-method eetq` lowers the loss and its adapter reloads on the
# quantized base. Exit status 0 when all pass. About a minute once the kernel is cached.
set -euo pipefail
PY=${PY:-.venv/bin/python}
MARTLET=${MARTLET:-.venv/bin/martlet}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

"$PY" - "$WORK" <<'EOF'
import sys
import torch
import transformers

assert torch.cuda.is_available(), "no CUDA GPU: this check needs one"
print(f"GPU: {torch.cuda.get_device_name(0)}; torch {torch.__version__}; "
      f"transformers {transformers.__version__}")
from martlet_eetq.quantizer import kernel_source, missing

source = kernel_source()
error = missing(source)
print(f"EETQ kernels from: {source}" + (f" -- MISSING: {error}" if error else ""))
if error:
    sys.exit(2)

import martlet
from martlet_sdk.tiny import tiny_model, tiny_tokenizer

work = sys.argv[1]
shape = {"hidden_size": 128, "intermediate_size": 256, "num_attention_heads": 4}
tokenizer = tiny_tokenizer()
tiny_model(seed=0, tokenizer=tokenizer, **shape).save_pretrained(f"{work}/model")
tokenizer.save_pretrained(f"{work}/model")

ids = torch.randint(3, 200, (2, 16), generator=torch.Generator().manual_seed(1)).cuda()
def logits(model):
    with torch.no_grad():
        return model(input_ids=ids).logits.float()
def relative(a, b):
    return float((a - b).norm() / b.norm())

plain, _ = martlet.load_model(f"{work}/model", torch_dtype="float16", device_map="cuda:0")
quant, _ = martlet.load_model(
    f"{work}/model", torch_dtype="float16", device_map="cuda:0", quant_method="eetq"
)
kinds = {type(m).__name__ for m in quant.modules()}
assert "EetqLinear" in kinds, f"no EETQ layer: {sorted(kinds)}"
assert type(quant.lm_head).__name__ == "Linear", "the output head must stay unquantized"
reference = logits(plain)
error = relative(logits(quant), reference)
stranger = relative(logits(tiny_model(seed=7, **shape).half().cuda()), reference)
print(f"int8 logits: {error:.4f} relative error (another random model: {stranger:.3f})")
assert error < 0.05 and error < 0.1 * stranger
print("load-time quantization: OK")
EOF

"$MARTLET" sft --model "$WORK/model" --quant-method eetq --quant-bits 8 --tuner lora \
    --torch-dtype float16 --device cuda --dataset 'sample-sft#16' \
    --per-device-train-batch-size 16 --max-steps 4 --learning-rate 1e-2 --logging-steps 1 \
    --disable-progress-bar --no-quant-report --output-dir "$WORK/run" --seed 0

"$PY" - "$WORK" <<'EOF'
import json, sys
import martlet

work = sys.argv[1]
losses = [json.loads(x)["loss"] for x in open(f"{work}/run/metrics.jsonl") if '"loss"' in x]
print(f"LoRA on EETQ: losses {[round(x, 3) for x in losses]}")
assert len(losses) == 4 and losses[-1] < losses[0], "the loss did not go down"
model, _, run = martlet.load_run(f"{work}/run", torch_dtype="float16", device_map="cuda:0")
assert run.quantization()["quant_method"] == "eetq"
assert any(type(m).__name__ == "EetqLinear" for m in model.modules())
print("QLoRA run and reload: OK")
EOF
echo "eetq GPU check: all passed"
