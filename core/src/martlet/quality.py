"""What a quantization cost: held-out perplexity next to the unquantized model's, the weights'
bytes in memory, the size on disk — printed as one line and written as ``quantization.json``
for every run on a quantized base and every quantized export.

The held-out text is the end of the embedded ``sample-pt`` dataset (:data:`HELD_OUT`), the
same for every model, so figures compare across methods and widths (``bench/quant.py``).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: the held-out text: the last rows of this embedded dataset
HELD_OUT = "sample-pt"
ROWS = 64
MAX_TOKENS = 256
#: the unquantized reference is measured only for bases up to this size on disk (loading a
#: second copy of a large model to measure it would cost more than the run)
REFERENCE_LIMIT = 2 * 2**30
FILE = "quantization.json"


def held_out_texts(rows: int = ROWS) -> list[str]:
    """The held-out texts (the last ``rows`` of :data:`HELD_OUT`), read once per process (a
    report measures the reference and the quantized model on them)."""
    return list(_held_out(rows))


@functools.cache
def _held_out(rows: int) -> tuple[str, ...]:
    import martlet

    texts = [r.get("text") or "" for r in martlet.load_dataset(HELD_OUT)]
    return tuple([t for t in texts if t.strip()][-rows:])


def perplexity(model: Any, tokenizer: Any, texts: list[str], max_tokens: int = MAX_TOKENS) -> float:
    """The perplexity of ``model`` on ``texts`` (each cut to ``max_tokens``): exp of the mean
    negative log-likelihood over every predicted token."""
    import torch

    device = next(model.parameters()).device
    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for text in texts:
            ids = tokenizer(text, add_special_tokens=False)["input_ids"][:max_tokens]
            if len(ids) < 2:
                continue
            batch = torch.tensor([ids], device=device)
            logits = model(input_ids=batch).logits[0, :-1].float()
            nll = torch.nn.functional.cross_entropy(logits, batch[0, 1:], reduction="sum")
            total, count = total + float(nll), count + len(ids) - 1
    model.train(was_training)
    return math.exp(total / max(count, 1))


def disk_bytes(path: str | Path) -> int:
    """Bytes of the weight files at ``path`` (a file, or a folder's files)."""
    p = Path(path)
    if p.is_file():
        return p.stat().st_size
    suffixes = {".safetensors", ".bin", ".gguf", ".pt", ".pth"}
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file() and f.suffix in suffixes)


def report(
    model: Any,
    tokenizer: Any,
    *,
    method: str,
    bits: int | None,
    out_dir: str | Path,
    reference: float | Callable[[], float] | None = None,
    written: str | Path | None = None,
) -> dict[str, Any]:
    """Measure the quantized ``model``, write ``out_dir/quantization.json`` and print one line.

    ``reference`` is the unquantized model's perplexity, or a callable measuring it (None:
    not measured); ``written`` what an export wrote (its size on disk).
    """
    from martlet.quantize import weight_bytes

    texts = held_out_texts()
    info: dict[str, Any] = {
        "method": method,
        "bits": bits,
        "held_out": f"{HELD_OUT} (last {len(texts)} rows, {MAX_TOKENS} tokens each at most)",
        "perplexity": round(perplexity(model, tokenizer, texts), 4),
        "weight_bytes": weight_bytes(model),
    }
    if callable(reference):
        reference = reference()
    if reference is not None:
        info["reference_perplexity"] = round(float(reference), 4)
        info["perplexity_ratio"] = round(info["perplexity"] / float(reference), 4)
    if written is not None:
        info["disk_bytes"] = disk_bytes(written)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    (Path(out_dir) / FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    print(describe(info), flush=True)
    return info


def describe(info: dict[str, Any]) -> str:
    """``quantized: bnb 4-bit, perplexity 12.19 (unquantized 10.40, ×1.17), weights 159 MiB``"""
    what = f"{info['method']} {info['bits']}-bit" if info.get("bits") else info["method"]
    line = f"quantized: {what}, held-out perplexity {info['perplexity']:.2f}"
    if "reference_perplexity" in info:
        ratio = info["perplexity_ratio"]
        line += f" (unquantized {info['reference_perplexity']:.2f}, ×{ratio:.2f})"
    line += f", weights {info['weight_bytes'] / 2**20:.0f} MiB in memory"
    if "disk_bytes" in info:
        line += f", {info['disk_bytes'] / 2**20:.0f} MiB on disk"
    return line


def reference_of(model_id: str, **load_options: Any) -> Callable[[], float] | None:
    """A callable measuring the unquantized ``model_id``'s perplexity (loaded again, then
    released), or None when its weights on disk exceed :data:`REFERENCE_LIMIT` (or are not a
    local path whose size is known)."""
    import martlet
    from martlet.api import resolve_model

    source, _ = resolve_model(model_id)
    size = disk_bytes(source) if Path(source).exists() else None
    if size is None or size > REFERENCE_LIMIT:
        return None

    def measure() -> float:
        plain, tokenizer = martlet.load_model(model_id, **load_options)
        try:
            return perplexity(plain, tokenizer, held_out_texts())
        finally:
            del plain

    return measure
