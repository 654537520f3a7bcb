"""The compiled CPU kernels against the modules they replace, natively and built for AVX2.

Times, forward + backward on a bfloat16 input of shape (2048, 576) (SmolLM2-135M's width):

- RMSNorm: transformers' ``LlamaRMSNorm`` (torch's operators and autograd) against
  ``martlet_kernels.cpu_kernels.rms_norm`` (numba, ``_norm_kernel``);
- dropout (p = 0.05): ``torch.nn.Dropout`` against ``martlet_kernels.dropout.FastDropout`` (its
  mask from numba's ``fill_mask_words``) and against the fused LoRA layers' seed-only
  ``DropMask`` (``dropped`` forward, ``zero_dropped_`` backward: ``and_mask_words``).

Each is the median of ``--reps`` runs after ``--warmup`` runs (a layer's implementations
taking turns), in two fresh processes: this CPU's own build, and an *emulation* of an AVX2-only
CPU (AMD Zen 3: no AVX512, no AMX) on this CPU — numba compiles for Haswell
(``NUMBA_CPU_NAME=haswell`` and an empty ``NUMBA_CPU_FEATURES``, without which numba keeps the
host's AVX512 features) into a fresh cache, torch runs its AVX2 kernels
(``ATEN_CPU_CAPABILITY=avx2``) and oneDNN at most AVX2 (``ONEDNN_MAX_CPU_ISA=AVX2``).
The emulation restricts the instruction set only: caches, memory and core counts stay this
machine's. Prints a Markdown table; a ratio (kernel / module) under 1 means the kernel is
faster.

    python bench/cpu_kernels_isa.py [--reps 200] [--warmup 20] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHAPE = (2048, 576)
P = 0.05
AVX2_ENV = {
    "NUMBA_CPU_NAME": "haswell",
    "NUMBA_CPU_FEATURES": "",
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
}


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def timings_ms(steps: dict, reps: int, warmup: int) -> dict:
    """For each of ``steps``: its first call (compilation or cache load included) and the
    median of ``reps`` calls after ``warmup``, in ms. The calls take turns, so a change in the
    machine's load (it may be shared) touches every step alike."""
    first = {}
    for name, step in steps.items():
        start = time.perf_counter()
        step()
        first[name] = (time.perf_counter() - start) * 1e3
    for _ in range(warmup):
        for step in steps.values():
            step()
    times = {name: [] for name in steps}
    for _ in range(reps):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return {
        name: {"first_ms": first[name], "median_ms": statistics.median(times[name]) * 1e3}
        for name in steps
    }


def measure(reps: int, warmup: int, threads: int | None) -> dict:
    """Run in a child process: every timing, and what the process compiled for."""
    import numba
    import torch
    from numba.core.registry import cpu_target

    if threads:
        torch.set_num_threads(threads)
    from martlet_kernels import _mask_kernel, _norm_kernel, dropout
    from martlet_kernels.cpu_kernels import rms_norm
    from martlet_kernels.dropout import DropMask, FastDropout
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    assert dropout._kernel() is not None and dropout._and_kernel() is not None, "numba"
    generator = torch.Generator().manual_seed(0)
    x = (torch.randn(SHAPE, generator=generator) * 3).to(torch.bfloat16).requires_grad_()
    grad = torch.randn(SHAPE, generator=generator).to(torch.bfloat16)
    norm = LlamaRMSNorm(SHAPE[1], eps=1e-5).to(torch.bfloat16)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(SHAPE[1], generator=generator) + 1)
    norm.weight.requires_grad_(False)  # frozen, as under LoRA
    torch_dropout = torch.nn.Dropout(P).train()
    fast_dropout = FastDropout(P).train()
    scratch = grad.clone()

    def through(fn):
        def step():
            x.grad = None
            fn(x).backward(grad)

        return step

    def seed_only():  # the fused LoRA layers: forward and backward of the dropout alone
        mask = DropMask(SHAPE, P, "cpu", torch.bfloat16)
        mask.dropped(x.detach())
        mask.zero_dropped_(scratch)

    cases = {
        ("RMSNorm", "LlamaRMSNorm"): through(norm),
        ("RMSNorm", "rms_norm (numba)"): through(
            lambda t: rms_norm(t, norm.weight, norm.variance_epsilon)
        ),
        ("dropout", "nn.Dropout"): through(torch_dropout),
        ("dropout", "FastDropout (numba mask)"): through(fast_dropout),
        ("dropout", "DropMask (numba, fused LoRA)"): seed_only,
    }
    results = {}
    for layer in dict.fromkeys(layer for layer, _ in cases):
        steps = {f"{name}|{impl}": step for (name, impl), step in cases.items() if name == layer}
        results.update(timings_ms(steps, reps, warmup))
    kernels = (
        _norm_kernel.rms_norm_forward,
        _norm_kernel.rms_norm_backward,
        _mask_kernel.fill_mask_words,
        _mask_kernel.and_mask_words,
        _mask_kernel.and_mask_words_inplace,
    )
    return {
        "numba_cpu": cpu_target.target_context.codegen().magic_tuple()[1],
        "numba_cpu_name": numba.config.CPU_NAME,
        "avx512_features": "+avx512f" in cpu_target.target_context.codegen().magic_tuple()[2],
        "compiled": sum(sum(k.stats.cache_misses.values()) for k in kernels),
        "from_cache": sum(sum(k.stats.cache_hits.values()) for k in kernels),
        "torch_isa": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "results": results,
    }


def run_child(args, env: dict) -> dict:
    argv = [sys.executable, __file__, "--child", "--reps", str(args.reps)]
    argv += ["--warmup", str(args.warmup)]
    if args.threads:
        argv += ["--threads", str(args.threads)]
    out = subprocess.run(argv, env=env, capture_output=True, text=True)
    if out.returncode:
        sys.exit(out.stdout + out.stderr)
    return json.loads(out.stdout.splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.reps, args.warmup, args.threads)))
        return 0

    root = Path(__file__).resolve().parents[1]
    os.chdir(root)
    runs = {"native": run_child(args, dict(os.environ))}
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, **AVX2_ENV, "NUMBA_CACHE_DIR": cache}
        runs["AVX2 (emulated)"] = run_child(args, env)
    avx2 = runs["AVX2 (emulated)"]
    assert avx2["numba_cpu"] == "haswell" and not avx2["avx512_features"], avx2
    assert avx2["torch_isa"] == "AVX2" and avx2["from_cache"] == 0, avx2

    print(f"CPU: {cpu_model()}; bfloat16 input {SHAPE}, forward + backward, dropout p={P}")
    print(f"median of {args.reps} runs after {args.warmup} warm-up runs, in ms\n")
    for name, run in runs.items():
        print(
            f"- {name}: numba CPU {run['numba_cpu']} (AVX512 features: "
            f"{'yes' if run['avx512_features'] else 'no'}), torch {run['torch_isa']}, "
            f"{run['threads']} torch threads, kernels compiled {run['compiled']} / "
            f"loaded from cache {run['from_cache']}"
        )
    print(
        "\nAVX2 (emulated): this CPU restricted to AVX2 code (numba for Haswell, "
        "ATEN_CPU_CAPABILITY=avx2, ONEDNN_MAX_CPU_ISA=AVX2), not an AVX2-only machine.\n"
    )
    print("| ISA | layer | implementation | ms | kernel / module | first call ms |")
    print("|---|---|---|---:|---:|---:|")
    for name, run in runs.items():
        module = {}
        for key, timing in run["results"].items():
            layer, impl = key.split("|")
            if layer not in module:  # the first of each layer is the module replaced
                module[layer] = timing["median_ms"]
                ratio = "(module)"
            else:
                ratio = f"{timing['median_ms'] / module[layer]:.2f}"
            print(
                f"| {name} | {layer} | {impl} | {timing['median_ms']:.3f} | {ratio} "
                f"| {timing['first_ms']:.1f} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
