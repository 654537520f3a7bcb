"""Quantization on the embedded SmolLM2-135M-Instruct: what each method and width costs.

For each ``method:bits`` (load time: the model quantized as it loads, as ``--quant-method``
does; ``gguf:TYPE`` and other export methods: ``martlet export --quant-method`` written, then
loaded back) it reports the time to quantize, the weights' bytes in memory, the size on disk
(exports), the held-out perplexity next to the unquantized model's (``martlet.quality``: the
same text for every row) and greedy decoding tokens/s at batch 1.

    python bench/quant.py [--methods none,bnb:4,bnb:8,hqq:4,quanto:8,gguf:q8_0] [--tokens 32]

Each row runs in its own process (the libraries patch torch differently; a fresh process
measures each alone).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile

MODEL = "smollm2-135m-instruct"
DEFAULT = "none,bnb:4,bnb:8,hqq:4,hqq:8,quanto:4,quanto:8,gguf:f16,gguf:q8_0,gguf:q4_0"

CHILD = r"""
import json, sys, time
import torch
import martlet
from martlet.quality import held_out_texts, perplexity
from martlet.quantize import weight_bytes
from martlet.quality import disk_bytes

method, bits, tokens, workdir = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
started = time.perf_counter()
out = {"method": method, "bits": bits}
if method == "none":
    model, tokenizer = martlet.load_model(sys.argv[5], torch_dtype="float32")
elif method == "gguf" or bits.startswith("export"):
    from martlet_export.cli import ExportConfig, run_export
    from martlet.config import build
    values = {"model": sys.argv[5], "quant_method": method, "output_dir": workdir,
              "torch_dtype": "float32", "quant_report": False}
    if method == "gguf":
        values["gguf_type"] = bits
    else:
        values["quant_bits"] = int(bits.removeprefix("export"))
    written = run_export(build(ExportConfig, values=values))
    files = [p for p in written.iterdir() if p.suffix == ".gguf"]
    target = str(files[0]) if files else str(written)
    out["disk_mib"] = round(disk_bytes(target) / 2**20, 1)
    model, tokenizer = martlet.load_model(target, torch_dtype="float32")
else:
    model, tokenizer = martlet.load_model(
        sys.argv[5], torch_dtype="float32", quant_method=method, quant_bits=int(bits)
    )
out["quantize_s"] = round(time.perf_counter() - started, 1)
out["weights_mib"] = round(weight_bytes(model) / 2**20, 1)
out["perplexity"] = round(perplexity(model, tokenizer, held_out_texts()), 3)
ids = tokenizer.apply_chat_template(
    [{"role": "user", "content": "What is the capital of France?"}],
    add_generation_prompt=True, return_tensors="pt", return_dict=True,
)["input_ids"].to(next(model.parameters()).device)
with torch.no_grad():
    model.generate(ids, max_new_tokens=2, do_sample=False)
    t = time.perf_counter()
    answer = model.generate(ids, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False)
    out["decode_tok_s"] = round(tokens / (time.perf_counter() - t), 1)
out["answer"] = tokenizer.decode(answer[0, ids.shape[1]:], skip_special_tokens=True)[:60]
print("RESULT " + json.dumps(out))
"""


def run(spec: str, tokens: int, model: str) -> dict:
    method, _, bits = spec.partition(":")
    with tempfile.TemporaryDirectory() as workdir:
        command = [sys.executable, "-c", CHILD, method, bits or "0", str(tokens)]
        proc = subprocess.run(
            [*command, workdir + "/out", model],
            capture_output=True,
            text=True,
        )
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    return {"method": method, "bits": bits, "error": (proc.stderr or proc.stdout)[-600:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=DEFAULT)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--model", default=MODEL)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {platform.processor() or '?'}; model {args.model}")
    rows = [run(spec, args.tokens, args.model) for spec in args.methods.split(",")]
    base = next((r["perplexity"] for r in rows if r.get("method") == "none"), None)
    print(
        "| method | bits/type | quantize s | weights MiB | disk MiB | perplexity | × none "
        "| decode tok/s | answer |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['method']} | {r['bits']} | error: {r['error'].splitlines()[-1]} |")
            continue
        ratio = f"{r['perplexity'] / base:.2f}" if base else "—"
        print(
            f"| {r['method']} | {r['bits']} | {r['quantize_s']} | {r['weights_mib']} | "
            f"{r.get('disk_mib', '—')} | {r['perplexity']} | {ratio} | {r['decode_tok_s']} | "
            f"{r['answer']!r} |"
        )


if __name__ == "__main__":
    main()
