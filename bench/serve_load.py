"""Serving under load: `martlet deploy` (and, with --swift, ms-swift's `swift deploy`) on the
embedded SmolLM2-135M-Instruct, driven by N concurrent streaming chat clients.

For each server and each concurrency it starts the server (batch size = concurrency, the best
setting for ms-swift), lets N clients send streaming `/v1/chat/completions` requests back to back
for a fixed time, and reports output tokens/s, time to first token and inter-token latency
(p50/p99), request latency p99 and errors. It also measures this machine's memory bandwidth and
states batch-1 decoding against the limit it sets: bytes of weights read per token (every
parameter once, in the dtype served) divided by the bandwidth.

ms-swift must be installed in its own virtual environment (its pins differ from ours):

    python3 -m venv /tmp/swiftvenv && /tmp/swiftvenv/bin/pip install torch==2.13.0 ms-swift
    python bench/serve_load.py [--clients 1,4,16,64] [--duration 30] \
        [--swift /tmp/swiftvenv/bin/swift]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

QUESTIONS = [
    "Tell me a story about a lighthouse keeper.",
    "Explain how a bicycle works.",
    "What should I cook for dinner tonight? Give a recipe.",
    "Describe the water cycle to a child.",
    "Write a short poem about autumn leaves.",
    "Why is the sky blue? Explain in detail.",
    "List some tips for learning a new language.",
    "What are the planets of the solar system? Describe each.",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port: int, path: str, proc: subprocess.Popen, timeout: float = 600) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode} before it was ready")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(1)
    raise SystemExit("the server did not become ready")


def one_request(port: int, model: str, question: str, max_tokens: int) -> dict:
    """A streaming chat request: time to first token, the gaps between tokens, and tokens."""
    body = json.dumps(
        {
            "model": model,
            "messages": [{"role": "user", "content": question}],
            "max_tokens": max_tokens,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    response = conn.getresponse()
    if response.status != 200:
        return {"error": f"HTTP {response.status}: {response.read()[:200]!r}"}
    times, usage = [], None
    for raw in response:
        line = raw.decode("utf-8", "replace").strip()
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            break
        chunk = json.loads(data)
        if chunk.get("usage"):
            usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if (choice.get("delta") or {}).get("content"):
                times.append(time.perf_counter())
    conn.close()
    ended = time.perf_counter()
    tokens = (usage or {}).get("completion_tokens") or len(times)
    return {
        "ttft": (times[0] - started) if times else None,
        "gaps": [b - a for a, b in zip(times, times[1:], strict=False)],
        "tokens": tokens,
        "latency": ended - started,
    }


def drive(port: int, model: str, clients: int, duration: float, max_tokens: int) -> dict:
    results: list[dict] = []
    lock = threading.Lock()
    stop_at = time.perf_counter() + duration

    def client(k: int) -> None:
        i = k
        while time.perf_counter() < stop_at:
            try:
                r = one_request(port, model, QUESTIONS[i % len(QUESTIONS)], max_tokens)
            except OSError as exc:
                r = {"error": repr(exc)}
            r["ended"] = time.perf_counter()
            with lock:
                results.append(r)
            i += clients

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    ok = [r for r in results if "error" not in r]
    gaps = sorted(g for r in ok for g in r["gaps"])
    ttfts = sorted(r["ttft"] for r in ok if r["ttft"] is not None)
    lat = sorted(r["latency"] for r in ok)

    def pct(xs, q):
        return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")

    return {
        "clients": clients,
        "requests": len(ok),
        "errors": len(results) - len(ok),
        "tokens_per_s": sum(r["tokens"] for r in ok) / elapsed,
        "ttft_p50": pct(ttfts, 0.5),
        "ttft_p99": pct(ttfts, 0.99),
        "itl_p50": pct(gaps, 0.5),
        "itl_p99": pct(gaps, 0.99),
        "latency_p99": pct(lat, 0.99),
        "first_error": next((r["error"] for r in results if "error" in r), None),
    }


def start_martlet(
    port: int, batch: int, dtype: str, log: Path, extra: list[str]
) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("martlet")
    cmd = [
        str(exe), "deploy", "--model", "smollm2-135m-instruct", "--port", str(port),
        "--max-batch-size", str(batch), "--torch-dtype", dtype,
        "--served-model-name", "smollm2", *extra,
    ]  # fmt: skip
    return subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT)


def start_swift(swift: str, source: str, port: int, batch: int, dtype: str, log: Path):
    cmd = [
        swift, "deploy", "--model", source, "--model_type", "llama", "--template", "chatml",
        "--infer_backend", "pt", "--max_batch_size", str(batch), "--port", str(port),
        "--torch_dtype", dtype, "--served_model_name", "smollm2", "--max_new_tokens", "2048",
    ]  # fmt: skip
    return subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT)


def bandwidth() -> float:
    """Bytes per second a large copy moves, read and write counted (as STREAM's Copy)."""
    import torch

    x = torch.ones(64 * 2**20)  # 256 MiB
    y = torch.empty_like(x)
    for _ in range(3):
        y.copy_(x)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        y.copy_(x)
        best = min(best, time.perf_counter() - t)
    return 2 * x.numel() * 4 / best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="1,4,16,64")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per concurrency")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--swift", help="the `swift` executable of ms-swift, to compare with")
    parser.add_argument(
        "--dtype", default="auto", help="the dtype served (auto: Martlet's choice for this CPU)"
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="also serve with `martlet deploy --compile` (the decoding step compiled)",
    )
    args = parser.parse_args()
    import martlet
    from martlet.precision import resolve

    dtype = args.dtype
    if dtype == "auto":
        dtype = resolve(device="cpu", inference=True).torch_dtype
    source, _ = martlet.resolve_model("smollm2-135m-instruct")
    if not Path(source, "config.json").is_file():  # the GGUF itself: convert it once
        martlet.load_model("smollm2-135m-instruct")
        source, _ = martlet.resolve_model("smollm2-135m-instruct")
    config = json.loads(Path(source, "config.json").read_text())
    hidden, layers = config["hidden_size"], config["num_hidden_layers"]
    inter, vocab = config["intermediate_size"], config["vocab_size"]
    kv = hidden // config["num_attention_heads"] * config["num_key_value_heads"]
    params = layers * (2 * hidden * hidden + 2 * hidden * kv + 3 * hidden * inter) + vocab * hidden
    size = {"bfloat16": 2, "float16": 2, "float32": 4}[dtype]
    bw = bandwidth()
    limit = bw / (params * size)
    cpu = platform.processor() or platform.machine()
    print(f"machine: {cpu}, {os.cpu_count()} CPUs; serving {dtype}", flush=True)
    print(
        f"copy bandwidth {bw / 1e9:.1f} GB/s (read+write) -> batch-1 limit "
        f"{limit:.0f} tokens/s ({params / 1e6:.0f}M parameters x {size} bytes per token; "
        f"{limit / 2:.0f} tokens/s counting the copy's bytes once)",
        flush=True,
    )
    servers: list[tuple[str, list[str] | None]] = [("martlet", [])]
    if args.compile:
        servers.append(("martlet --compile", ["--compile"]))
    if args.swift:
        servers.append(("ms-swift", None))
    table = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, extra in servers:
            for clients in [int(c) for c in args.clients.split(",")]:
                port = free_port()
                log = Path(tmp, f"{name.replace(' ', '')}-{clients}.log")
                started = time.perf_counter()
                proc = (
                    start_martlet(port, clients, dtype, log, extra)
                    if extra is not None
                    else start_swift(args.swift, source, port, clients, dtype, log)
                )
                try:
                    wait_ready(port, "/health" if extra is not None else "/v1/models", proc)
                    ready = time.perf_counter() - started
                    one_request(port, "smollm2", QUESTIONS[0], 8)  # warm up
                    row = drive(port, "smollm2", clients, args.duration, args.max_tokens)
                finally:
                    proc.terminate()
                    try:
                        proc.wait(timeout=60)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                row["server"] = name
                row["start_s"] = ready
                table.append(row)
                print(json.dumps(row), flush=True)
                if row["first_error"]:
                    print(log.read_text()[-2000:], flush=True)
    print(
        "\n| server | clients | output tok/s | TTFT p50 / p99 s | ITL p50 / p99 ms | "
        "latency p99 s | requests | errors | start-up s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in table:
        print(
            f"| {r['server']} | {r['clients']} | {r['tokens_per_s']:.1f} | "
            f"{r['ttft_p50']:.2f} / {r['ttft_p99']:.2f} | {1e3 * r['itl_p50']:.1f} / "
            f"{1e3 * r['itl_p99']:.1f} | {r['latency_p99']:.1f} | {r['requests']} | "
            f"{r['errors']} | {r['start_s']:.0f} |"
        )
    for one in (r for r in table if r["server"].startswith("martlet") and r["clients"] == 1):
        if one["itl_p50"] == one["itl_p50"]:
            decode = 1 / one["itl_p50"]
            print(
                f"\n{one['server']}: batch-1 decode (1 / median inter-token gap): "
                f"{decode:.1f} tokens/s = {100 * decode / limit:.0f}% of the read+write copy "
                f"limit, {200 * decode / limit:.0f}% counting the copy's bytes once"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
