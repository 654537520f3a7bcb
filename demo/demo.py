"""`make demo`: teach the embedded SmolLM2-135M-Instruct a new identity with LoRA, on the CPU.

Every step is a plain `martlet` command, printed before it runs, so you can run them yourself:
ask the base model two questions, fine-tune it on the embedded `self-cognition` data (plus a
little general chat so it keeps its knowledge), then ask the tuned model the same questions.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARTLET = str(Path(sys.executable).parent / "martlet")
QUESTIONS = ROOT / "demo" / "questions.jsonl"
OUT = Path(os.environ.get("DEMO_OUTPUT", ROOT / "output" / "demo-aria"))
NAME, AUTHOR = "Aria", "Acme Labs"
MODEL = "smollm2-135m-instruct"

TRAIN = [
    "sft",
    "--model",
    MODEL,
    "--tuner",
    "lora",
    "--lora-rank",
    "8",
    "--lora-alpha",
    "32",
    "--lora-plus-ratio",
    "16",
    "--dataset",
    "self-cognition",
    "sample-sft#32",
    "--model-name",
    NAME,
    "--model-author",
    AUTHOR,
    "--system",
    "You are a helpful assistant.",
    "--num-train-epochs",
    "3",
    "--per-device-train-batch-size",
    "8",
    "--learning-rate",
    "4e-4",
    "--warmup-ratio",
    "0.05",
    "--max-length",
    "256",
    "--packing",
    "--logging-steps",
    "5",
    "--save-steps",
    "1000",
    "--output-dir",
    str(OUT),
    "--overwrite-output-dir",
]


def martlet(args: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    print(f"\n$ martlet {shlex.join(args)}", flush=True)
    return subprocess.run([MARTLET, *args], check=True, text=True, **kwargs)


def ask(source: list[str]) -> list[str]:
    done = martlet(
        ["infer", *source, "--input", str(QUESTIONS), "--max-new-tokens", "48"],
        stdout=subprocess.PIPE,
    )
    return [json.loads(line)["response"] for line in done.stdout.splitlines()]


def show(title: str, answers: list[str]) -> None:
    print(f"\n== {title}")
    for row, answer in zip(QUESTIONS.read_text().splitlines(), answers, strict=True):
        question = json.loads(row)["messages"][0]["content"]
        print(f"  Q: {question}\n  A: {answer.strip()}")


def main() -> int:
    base = ask(["--model", MODEL])
    show("the base model", base)
    started = time.perf_counter()
    martlet(TRAIN)
    minutes = (time.perf_counter() - started) / 60
    tuned = ask(["--adapters", str(OUT)])
    show(f"after {minutes:.1f} minutes of LoRA training ({OUT})", tuned)
    knows_name = NAME in tuned[0] and AUTHOR in tuned[0]
    knows_paris = "Paris" in tuned[1]
    print(
        f"\nnew name and author learned: {'yes' if knows_name else 'no'}; "
        f"still knows the capital of France: {'yes' if knows_paris else 'no'}"
    )
    return 0 if knows_name and knows_paris else 1


if __name__ == "__main__":
    sys.exit(main())
