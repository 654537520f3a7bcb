"""The same LoRA SFT work as `bench/sft_throughput.py`'s fp32 variant, run by ms-swift.

ms-swift must be installed in a separate virtual environment (its pins differ from ours):

    python3 -m venv /tmp/swiftvenv && /tmp/swiftvenv/bin/pip install torch==2.13.0 ms-swift
    python bench/msswift_sft.py --swift /tmp/swiftvenv/bin/swift [--steps 16]

Same model files (the safetensors folder Martlet converted from the embedded GGUF), same rows
(`sample-sft#256` written out as JSON Lines), same hyperparameters (LoRA r8 alpha 32
all-linear, batch 4, max length 512, fp32, learning rate 1e-4) and the same tokens: ms-swift's
chatml template with SmolLM2's default system prompt renders each row exactly as SmolLM2's own
template does in Martlet (`--no-system` drops the prompt, as the first runs did). ms-swift
reports its training runtime; real tokens/s = the tokens of the rows it trained on (counted with
the model's chat template) / that runtime. Peak RSS is the swift process's.

In the same run, ``--martlet VARIANTS`` (default: ``default,default-packed``) trains
`bench/sft_throughput.py`'s variants on the same work (``--cpu-bf16 0``: the fp32 path a CPU
without native bf16 takes) and prints each beside ms-swift: tokens/s, peak RSS and the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

#: the default system prompt of SmolLM2's chat template (ChatML otherwise)
SMOLLM2_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--swift", required=True, help="the `swift` executable of ms-swift")
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument(
        "--no-system",
        action="store_true",
        help="leave out SmolLM2's default system prompt (ms-swift's chatml has none), so "
        "ms-swift's rows are ~20 tokens shorter than Martlet's",
    )
    parser.add_argument(
        "--gradient-checkpointing",
        choices=("true", "false"),
        default="true",
        help="ms-swift's --gradient_checkpointing (its default is true; Martlet's is off)",
    )
    parser.add_argument(
        "--torch-dtype", default="float32", help="ms-swift's --torch_dtype (float32, bfloat16)"
    )
    parser.add_argument(
        "--swift-args",
        default="",
        help="more ms-swift flags, as one string (e.g. '--group_by_length true --attn_impl eager')",
    )
    parser.add_argument(
        "--martlet",
        default="default,default-packed",
        help="bench/sft_throughput.py variants to run on the same work in this run ('' for none)",
    )
    parser.add_argument(
        "--cpu-bf16",
        choices=("auto", "0", "1"),
        default="0",
        help="what the CPU reports to Martlet's `auto` precision (0: the fp32 path)",
    )
    args = parser.parse_args()
    if args.cpu_bf16 != "auto":
        os.environ["MARTLET_CPU_BF16"] = args.cpu_bf16

    import martlet

    source, _ = martlet.resolve_model("smollm2-135m-instruct")
    if not Path(source, "config.json").is_file():  # the GGUF itself: convert it once
        martlet.load_model("smollm2-135m-instruct")
        source, _ = martlet.resolve_model("smollm2-135m-instruct")
    rows = list(martlet.load_dataset("sample-sft#256"))
    tokenizer = martlet.load_tokenizer(source)
    template = martlet.load_template(tokenizer)
    lengths = [min(len(template.encode(r["messages"])["input_ids"]), 512) for r in rows]
    mean_tokens = sum(lengths) / len(lengths)

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp, "rows.jsonl")
        data.write_text("".join(json.dumps({"messages": r["messages"]}) + "\n" for r in rows))
        cmd = [
            # ms-swift has no SmolLM2 entry: it is a Llama architecture with a ChatML template
            args.swift,
            "sft",
            "--model",
            source,
            "--model_type",
            "llama",
            "--template",
            "chatml",
            "--tuner_type",
            "lora",
            "--lora_rank",
            "8",
            "--lora_alpha",
            "32",
            "--lora_dropout",
            "0.05",
            "--target_modules",
            "all-linear",
            "--dataset",
            str(data),
            "--per_device_train_batch_size",
            "4",
            "--gradient_accumulation_steps",
            "1",
            "--max_length",
            "512",
            "--torch_dtype",
            args.torch_dtype,
            "--learning_rate",
            "1e-4",
            "--max_steps",
            str(args.steps),
            "--logging_steps",
            "4",
            "--save_steps",
            "100000",
            "--split_dataset_ratio",
            "0",
            "--dataset_num_proc",
            "1",
            "--dataloader_num_workers",
            "0",
            "--report_to",
            "none",
            "--output_dir",
            str(Path(tmp, "out")),
            "--seed",
            "0",
            "--gradient_checkpointing",
            args.gradient_checkpointing,
        ]
        cmd += args.swift_args.split()
        if not args.no_system:
            # SmolLM2's own template adds this system prompt to every row: the same tokens
            cmd += ["--system", SMOLLM2_SYSTEM]
        print("$ " + " ".join(cmd), flush=True)
        log = Path(tmp, "swift.log")
        with open(log, "w") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
            _, status, usage = os.wait4(proc.pid, 0)
        text = log.read_text()
        if status != 0:
            print(text[-4000:])
            return 1
    runtime = float(re.findall(r"'train_runtime': '?([0-9.]+)", text)[-1])
    # ms-swift states the mean token length of its encoded rows; prefer it to ours
    stated = re.findall(r"Dataset Token Length: ([0-9.]+)", text)
    if stated:
        mean_tokens = float(stated[-1])
    tokens = mean_tokens * 4 * args.steps
    swift_speed, swift_rss = tokens / runtime, usage.ru_maxrss / 2**20
    print(
        f"ms-swift: {args.steps} steps in {runtime:.1f} s of training; "
        f"~{tokens:.0f} real tokens -> {swift_speed:.0f} tokens/s; peak RSS {swift_rss:.2f} GiB",
        flush=True,
    )
    variants = [v for v in args.martlet.split(",") if v]
    if not variants:
        return 0
    sys.path.insert(0, str(Path(__file__).parent))
    from sft_throughput import run_variant

    print(f"MARTLET_CPU_BF16={os.environ.get('MARTLET_CPU_BF16', '(unset)')}")
    print("\n| run | real tokens/s (all steps) | × ms-swift | peak RSS GiB | × ms-swift |")
    print("|---|---|---|---|---|")
    print(f"| ms-swift | {swift_speed:.0f} | 1.00 | {swift_rss:.2f} | 1.00 |", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for i, name in enumerate(variants):
            r = run_variant(name, args.steps, Path(tmp, str(i)))
            print(
                f"| Martlet {name} | {r['all_steps']:.0f} | {r['all_steps'] / swift_speed:.2f} | "
                f"{r['peak_rss_gib']:.2f} | {r['peak_rss_gib'] / swift_rss:.2f} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
