"""LoRA SFT throughput on the embedded SmolLM2-135M-Instruct.

Each variant runs `martlet sft` in its own process on the same data (the embedded `sample-sft`,
256 chat rows) and hyperparameters (LoRA r8 all-linear, batch 4, max length 512), and reports
real (non-padding) tokens/s — the median of the logged windows after the first, and over all
steps (as ms-swift's runtime-based figure counts) —, the padding fraction and the peak RSS of
that process. It also measures this CPU's bf16 and fp32
matrix-product rates, to say what fraction of the hardware the training reaches.

    python bench/sft_throughput.py [--steps 16] [--variants fp32,bf16,bf16-fast]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODEL = "smollm2-135m-instruct"
COMMON = dict(
    model=MODEL,
    tuner="lora",
    lora_rank=8,
    lora_alpha=32,
    lora_dropout=0.05,
    target_modules=["all-linear"],
    dataset=["sample-sft#256"],
    per_device_train_batch_size=4,
    gradient_accumulation_steps=1,
    learning_rate=1e-4,
    max_length=512,
    logging_steps=4,
    save_steps=100000,
    disable_progress_bar=True,
    seed=0,
    dataset_shuffle=True,
)
# the fastest settings found on this CPU: bf16 frozen weights (adapters stay fp32) under bf16
# autocast, eager attention (faster than sdpa for rows this short), rows of similar length
# batched together
FAST = dict(
    torch_dtype="bfloat16",
    mixed_precision="bf16",
    attn_impl="eager",
    group_by_length=True,
    padding_free=False,  # the settings as first measured: padded batches, no memory limit
    max_activation_memory="none",
)
FP32 = dict(torch_dtype="float32", mixed_precision="no")
VARIANTS = {
    # Martlet's defaults (precision `auto`: see --cpu-bf16; padding-free batches, activation
    # memory within a third of the weights' size)
    "default": {},
    "default-unlimited": {"max_activation_memory": "none"},
    # the defaults with rows packed into 512-token rows (as many rows as --steps unpacked steps)
    "default-packed": {"packing": True, "logging_steps": 1},
    # ms-swift's work exactly: fp32, PyTorch's default attention (sdpa), padded batches
    "fp32": {**FP32, "padding_free": False, "max_activation_memory": "none"},
    "fp32-checkpointing": {**FP32, "padding_free": False, "gradient_checkpointing": True},
    "fp32-selective": {**FP32, "padding_free": False, "selective_checkpointing": True},
    "fp32-fast": {**FP32, "attn_impl": "eager", "group_by_length": True, "padding_free": False},
    "bf16": dict(torch_dtype="float32", mixed_precision="bf16"),
    "bf16-packed": dict(torch_dtype="float32", mixed_precision="bf16", packing=True),
    "bf16-fast": FAST,
    # the fastest settings with activation checkpointing, for less memory
    "bf16-fast-checkpointing": {**FAST, "gradient_checkpointing": True},
    "bf16-fast-selective": {**FAST, "selective_checkpointing": True},
    # the same with PEFT's own LoRA modules instead of Martlet's fused LoRA function
    "bf16-fast-unfused": {**FAST, "kernels": ["auto", "-fused-lora"]},
    # rows packed into four 512-token rows per step (attention segment by segment); runs as
    # many rows as the unpacked variants (--steps 64: one epoch, 8 packed steps)
    # (each step logged: the median is over 7 steps)
    "bf16-fast-packed": {**FAST, "packing": True, "group_by_length": False, "logging_steps": 1},
}
ROWS = 256

CHILD = """
import json, sys
from martlet_train.job import sft
result = sft(json.loads(sys.argv[1]))
print("RESULT " + json.dumps(result.metrics))
"""


def run_variant(name: str, steps: int, workdir: Path) -> dict:
    workdir.mkdir(parents=True)
    options = {**COMMON, **VARIANTS[name], "output_dir": str(workdir / name)}
    if options.get("packing"):  # the same rows as `steps` unpacked steps: by epochs
        rows = steps * COMMON["per_device_train_batch_size"]
        options.update(max_steps=-1, num_train_epochs=rows / ROWS)
    else:
        options["max_steps"] = steps
    started = time.perf_counter()
    log = workdir / f"{name}.log"
    with open(log, "w") as out:  # a file, not a pipe: a full pipe would block the child
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, json.dumps(options)], stdout=out, stderr=subprocess.STDOUT
        )
        _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise RuntimeError(f"{name} failed:\n{log.read_text()[-3000:]}")
    metrics = [
        json.loads(line) for line in (workdir / name / "metrics.jsonl").read_text().splitlines()
    ]
    train = [m for m in metrics if "tokens_per_second" in m]
    speeds = [m["tokens_per_second"] for m in train[1:]] or [train[0]["tokens_per_second"]]
    return {
        "variant": name,
        "tokens_per_second": statistics.median(speeds),
        # every step, the first included: what ms-swift's runtime-based figure counts
        "all_steps": sum(m["num_tokens"] for m in train) / sum(m["step_seconds"] for m in train),
        "padding_fraction": statistics.mean(m["padding_fraction"] for m in train),
        "peak_rss_gib": usage.ru_maxrss / 2**20,  # kilobytes on Linux
        "wall_s": time.perf_counter() - started,
        "final_loss": train[-1]["loss"],
    }


def matmul_rate(dtype_name: str, n: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of an n×n matrix product in ``dtype`` on this CPU (best of ``repeats``)."""
    import torch

    dtype = getattr(torch, dtype_name)
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def flops_per_token() -> tuple[float, float]:
    """Matrix-product FLOPs per real token of this work, as ``(decoder, all)``.

    ``decoder``: the decoder layers' linear products, forward (2N) plus the activation
    gradients of the backward pass (2N) for a frozen base — a lower bound. ``all`` adds every
    other product the step needs, counted from the encoded rows: the output layer at target
    positions (forward and input gradient), causal attention scores and values (the useful
    lower triangle, forward and backward) and the rank-r adapter products (forward and
    backward). Neither counts recomputation or padding."""
    import martlet
    from martlet_data.encode import encode_rows
    from transformers import AutoConfig

    source, _ = martlet.resolve_model(MODEL)
    if not Path(source, "config.json").is_file():  # the GGUF itself: convert it once
        martlet.load_model(MODEL)
        source, _ = martlet.resolve_model(MODEL)
    config = AutoConfig.from_pretrained(source)
    h, i, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    kv = config.num_key_value_heads * (h // config.num_attention_heads)
    per_layer = h * h * 2 + h * kv * 2 + 3 * h * i
    decoder = 4.0 * layers * per_layer

    tokenizer = martlet.load_tokenizer(MODEL)
    template = martlet.load_template(tokenizer)
    rows = martlet.load_dataset(COMMON["dataset"][0])
    encoded = list(
        encode_rows(rows, template, tokenizer=tokenizer, max_length=COMMON["max_length"])
    )
    lengths = [len(r["input_ids"]) for r in encoded]
    targets = sum(sum(1 for t in r["labels"][1:] if t != -100) for r in encoded)
    tokens = sum(lengths)
    head = 4.0 * config.vocab_size * h * targets / tokens
    # per layer and row of n tokens: QK^T and AV over the causal half, 2 * h * n^2 forward,
    # twice that backward
    attention = layers * sum(6.0 * h * n * n for n in lengths) / tokens
    rank = COMMON["lora_rank"]
    adapter_widths = (h + h) * 2 + (h + kv) * 2 + (h + i) * 3  # in + out of each adapted layer
    adapters = 6.0 * layers * rank * adapter_widths  # forward 2, backward 4 per width
    return decoder, decoder + head + attention + adapters


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument(
        "--cpu-bf16",
        choices=("auto", "0", "1"),
        default="auto",
        help="what the CPU reports to `auto` precision: its own flags, none (0: the fp32 path "
        "of a CPU without native bf16) or native (1)",
    )
    args = parser.parse_args()
    if args.cpu_bf16 != "auto":
        os.environ["MARTLET_CPU_BF16"] = args.cpu_bf16
    names = [v for v in args.variants.split(",") if v]
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; {args.steps} optimizer steps per variant; "
        f"MARTLET_CPU_BF16={os.environ.get('MARTLET_CPU_BF16', '(unset)')}"
    )
    fp32, bf16 = matmul_rate("float32"), matmul_rate("bfloat16")
    print(f"matrix products: fp32 {fp32:.0f} GFLOP/s, bf16 {bf16:.0f} GFLOP/s")
    # the machine is shared: the bf16 rate is measured again after every variant, and the
    # limit is the highest of all measurements (a slow moment never inflates the fractions)
    bf16_rates = [bf16]
    per_token, per_token_all = flops_per_token()
    print(
        f"matrix-product FLOPs per real token: {per_token / 1e6:.0f} M (decoder layers), "
        f"{per_token_all / 1e6:.0f} M (all products)"
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            # a folder per run: a variant may be listed twice, to see the machine's drift
            rows.append(run_variant(name, args.steps, Path(tmp) / str(len(rows))))
            bf16_rates.append(matmul_rate("bfloat16"))
            print(f"  done: {name} (bf16 products now {bf16_rates[-1]:.0f} GFLOP/s)", flush=True)
    bf16 = max(bf16_rates)
    print(f"bf16 limit: {bf16:.0f} GFLOP/s (highest of {len(bf16_rates)} measurements)")
    print(
        "\n| variant | real tokens/s | all steps | padding | peak RSS GiB | decoder GFLOP/s "
        "| of bf16 limit | all products GFLOP/s | of bf16 limit |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        rate = r["tokens_per_second"] * per_token / 1e9
        rate_all = r["tokens_per_second"] * per_token_all / 1e9
        print(
            f"| {r['variant']} | {r['tokens_per_second']:.0f} | {r['all_steps']:.0f} | "
            f"{r['padding_fraction']:.1%} | "
            f"{r['peak_rss_gib']:.2f} | {rate:.0f} | {rate / bf16:.0%} | {rate_all:.0f} | "
            f"{rate_all / bf16:.0%} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
