"""Throughput of an inference backend's serving engine, driven as `martlet deploy` drives it.

    python bench/backend_throughput.py --backend vllm --model smollm2-135m-instruct \\
        --concurrency 1 16 --max-tokens 64 --option enforce_eager=true --option kv_cache_space=2

Starts the backend's engine once (``serving()`` of the record, through the registry), then for
each concurrency C submits C chat prompts at once (greedy, ``ignore_eos``: every request
decodes exactly ``--max-tokens``) and reports output tokens/s, time to first token (p50, p99)
and the engine's start-up time. One JSON line per run with ``--json`` (what
tests/gpu/run_backends.sh collects), else a table row.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from typing import Any

QUESTIONS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Explain what a language model is in two sentences.",
    "List three prime numbers.",
]


def value(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def run(engine: Any, prompts: list[list[int]], max_tokens: int) -> dict[str, float]:
    from martlet.generation import SamplingParams

    params = SamplingParams(max_tokens=max_tokens, ignore_eos=True)
    start = time.perf_counter()
    streams = [engine.submit(p, params) for p in prompts]
    firsts: list[float] = []
    counts: list[int] = []

    def read(stream: Any) -> None:  # one reader per stream: each first token timed as it comes
        first, tokens = None, 0
        for step in stream:
            if step.token_ids and first is None:
                first = time.perf_counter() - start
            tokens += len(step.token_ids)
        firsts.append(first or float("nan"))
        counts.append(tokens)

    readers = [threading.Thread(target=read, args=(s,)) for s in streams]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join()
    tokens = sum(counts)
    wall = time.perf_counter() - start
    ordered = sorted(firsts)
    return {
        "output_tokens_per_s": tokens / wall,
        "ttft_p50_s": statistics.median(ordered),
        "ttft_p99_s": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
        "tokens": tokens,
        "wall_s": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="pt")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--device", default=None)
    parser.add_argument(
        "--option", action="append", default=[], metavar="KEY=VALUE",
        help="a keyword of serving(): a backend option, max_model_len, max_batch_size",
    )  # fmt: skip
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from martlet.manager import get_manager

    options = {k: value(v) for k, v in (o.split("=", 1) for o in args.option)}
    record = get_manager().registry.get("inference_backends", args.backend)
    started = time.perf_counter()
    engine = record.load().serving(args.model, device=args.device, **options)
    startup = time.perf_counter() - started
    tokenizer = engine.tokenizer
    base = [
        tokenizer(
            tokenizer.apply_chat_template(
                [{"role": "user", "content": q}], add_generation_prompt=True, tokenize=False
            ),
            add_special_tokens=False,
        )["input_ids"]
        for q in QUESTIONS
    ]
    try:
        run(engine, base[:1], 4)  # warm-up
        for concurrency in args.concurrency:
            prompts = [base[i % len(base)] for i in range(concurrency)]
            result = {"backend": args.backend, "model": args.model, "concurrency": concurrency,
                      "max_tokens": args.max_tokens, "startup_s": startup,
                      **run(engine, prompts, args.max_tokens)}  # fmt: skip
            if args.json:
                print(json.dumps(result), flush=True)
            else:
                print(
                    f"{args.backend:9} c={concurrency:<3} {result['output_tokens_per_s']:8.1f} "
                    f"tok/s  ttft p50 {result['ttft_p50_s']:.3f}s p99 "
                    f"{result['ttft_p99_s']:.3f}s  (start-up {startup:.1f}s)",
                    flush=True,
                )
    finally:
        engine.shutdown(drain=False)


if __name__ == "__main__":
    main()
