"""Martlet's GRPO against TRL's `GRPOTrainer` on the same work, in one run.

    .venv/bin/python bench/grpo.py [--steps 6] [--model smollm2-135m-instruct]

Same model files (the safetensors folder Martlet converted from the embedded GGUF, or a folder
given with --model), same prompts (`sample-rl#N`: arithmetic questions with a `solution`), the
same reward (martlet-rewards' `accuracy`, called by TRL as one of its reward functions: the
`rewards` kind's protocol is TRL's), and the same settings: LoRA r8 alpha 32 on every linear
layer, G completions per prompt, per-device batch B completions, completion length L,
temperature 1, learning rate 1e-5, `beta` 0 (no reference model), loss type `grpo`, fp32 (TRL
on a CPU trains in fp32; Martlet is told so with ``MARTLET_CPU_BF16=0``), one process each.

Each trainer runs in its own process; reported per trainer: optimizer steps per second over
the run's steps (model loading excluded: TRL's ``train_runtime``, Martlet's summed
``step_seconds``), rollout tokens per second (completion tokens sampled / that time) and the
process's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

TRL_SCRIPT = r"""
import json, sys, time
import torch
from datasets import Dataset
from peft import LoraConfig
from trl import GRPOConfig, GRPOTrainer
from martlet import registry

args = json.loads(sys.argv[1])
torch.manual_seed(args["seed"])
rows = [json.loads(line) for line in open(args["data"])]
dataset = Dataset.from_list([{"prompt": r["messages"], "solution": r["solution"]} for r in rows])
accuracy = registry.get("rewards", "accuracy").load()(
    max_completion_length=args["length"], device="cpu"
)
accuracy.__name__ = "accuracy"
config = GRPOConfig(
    output_dir=args["out"], per_device_train_batch_size=args["batch"],
    num_generations=args["group"], max_completion_length=args["length"], learning_rate=1e-5,
    max_steps=args["steps"], logging_steps=1, beta=0.0, loss_type="grpo", temperature=1.0,
    use_cpu=True, bf16=False, fp16=False, report_to=[], save_strategy="no", seed=args["seed"],
    gradient_accumulation_steps=1, lr_scheduler_type="constant", dataloader_num_workers=0,
)
lora = LoraConfig(r=8, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear",
                  task_type="CAUSAL_LM")
trainer = GRPOTrainer(model=args["model"], reward_funcs=[accuracy], args=config,
                      train_dataset=dataset, peft_config=lora)
out = trainer.train()
logs = [h for h in trainer.state.log_history if "completions/mean_length" in h]
tokens = sum(h["completions/mean_length"] * args["batch"] for h in logs)
print("RESULT " + json.dumps({
    "seconds": out.metrics["train_runtime"], "tokens": tokens,
    "reward": [h.get("reward") for h in logs],
}))
"""


def run(cmd: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """``cmd`` in a fresh process started by a fresh Python (so RUSAGE_CHILDREN is its own)."""
    wrapper = (
        "import json, resource, subprocess, sys\n"
        "p = subprocess.run(json.loads(sys.argv[1]), capture_output=True, text=True)\n"
        "sys.stdout.write(p.stdout); sys.stderr.write(p.stderr)\n"
        "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2\n"
        "print('PEAK_RSS_GB %.3f' % rss)\n"
        "sys.exit(p.returncode)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", wrapper, json.dumps(cmd)], capture_output=True, text=True, env=env
    )


def peak(result: subprocess.CompletedProcess) -> float:
    lines = [ln for ln in result.stdout.splitlines() if ln.startswith("PEAK_RSS_GB ")]
    return float(lines[-1].split()[1]) if lines else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--group", type=int, default=4, help="completions per prompt (G)")
    parser.add_argument("--batch", type=int, default=8, help="completions per step (B)")
    parser.add_argument("--length", type=int, default=32, help="max completion length (L)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=("martlet", "trl"), help="run one trainer only")
    args = parser.parse_args()

    import martlet

    source, _ = martlet.resolve_model(args.model)
    if not Path(source, "config.json").is_file():  # the GGUF itself: convert it once
        martlet.load_model(args.model)
        source, _ = martlet.resolve_model(args.model)
    rows = list(martlet.load_dataset(f"sample-rl#{args.steps * args.batch}", prompts=True,
                                     keep_columns=True))  # fmt: skip
    env = {**os.environ, "MARTLET_CPU_BF16": "0", "TOKENIZERS_PARALLELISM": "false"}
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp, "rows.jsonl")
        data.write_text(
            "".join(json.dumps({"messages": r["messages"], "solution": r["solution"]}) + "\n"
                    for r in rows)  # fmt: skip
        )
        if args.only in (None, "martlet"):
            out = Path(tmp, "martlet")
            cmd = [
                sys.executable, "-m", "martlet", "rlhf", "--method", "grpo", "--model", source,
                "--dataset", str(data), "--reward-funcs", "accuracy",
                "--num-generations", str(args.group),
                "--per-device-train-batch-size", str(args.batch),
                "--max-completion-length", str(args.length), "--max-steps", str(args.steps),
                "--learning-rate", "1e-5", "--beta", "0", "--loss-type", "grpo",
                "--lora-rank", "8", "--lora-alpha", "32", "--lora-dropout", "0",
                "--lr-scheduler-type", "constant", "--logging-steps", "1",
                "--seed", str(args.seed), "--no-dataset-shuffle", "--log-completions-every", "0",
                "--disable-progress-bar", "--output-dir", str(out),
            ]  # fmt: skip
            result = run(cmd, env)
            if result.returncode:
                print(result.stderr[-3000:], file=sys.stderr)
                return 1
            logs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
            logs = [m for m in logs if "step_seconds" in m]
            results["martlet"] = {
                "seconds": sum(m["step_seconds"] for m in logs),
                "tokens": sum(m["completions/mean_length"] * args.batch for m in logs),
                "reward": [m["reward"] for m in logs],
                "peak_rss_gb": peak(result),
            }
        if args.only in (None, "trl"):
            spec = {"model": source, "data": str(data), "out": str(Path(tmp, "trl")),
                    "steps": args.steps, "group": args.group, "batch": args.batch,
                    "length": args.length, "seed": args.seed}  # fmt: skip
            result = run([sys.executable, "-c", TRL_SCRIPT, json.dumps(spec)], env)
            if result.returncode:
                print(result.stderr[-3000:], file=sys.stderr)
                return 1
            line = [x for x in result.stdout.splitlines() if x.startswith("RESULT ")][-1]
            results["trl"] = {**json.loads(line[len("RESULT ") :]), "peak_rss_gb": peak(result)}
    print(f"model {args.model}, G={args.group}, B={args.batch}, L={args.length}, "
          f"{args.steps} steps, fp32, LoRA r8 all-linear, one process each")  # fmt: skip
    print("| trainer | steps/s | rollout tokens/s | peak RSS GB | reward per step |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        rewards = " ".join(f"{x:.2f}" for x in r["reward"] if x is not None)
        print(f"| {name} | {args.steps / r['seconds']:.3f} | {r['tokens'] / r['seconds']:.1f} "
              f"| {r['peak_rss_gb']:.2f} | {rewards} |")  # fmt: skip
    if len(results) == 2:
        m, t = results["martlet"], results["trl"]
        print(f"Martlet / TRL: steps/s x{t['seconds'] / m['seconds']:.2f}, "
              f"memory x{m['peak_rss_gb'] / t['peak_rss_gb']:.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
