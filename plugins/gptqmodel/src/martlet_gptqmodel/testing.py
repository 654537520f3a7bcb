"""What martlet-gptq's and martlet-awq's tests share: the tiny Llama they quantize, saved and
loaded back with its reference logits, the logits and their relative error, calibration rows,
and the names of gptqmodel's layers in a loaded model.

For tests only: no pytest import (the tests' fixtures call these), and torch, martlet's
loaders and martlet-sdk's tiny model are imported where used."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

#: the tiny Llama's widths: multiples of every usual group size
SHAPE = {"hidden_size": 128, "intermediate_size": 256, "num_attention_heads": 4}
#: the linear layers of each decoder block, the ones gptqmodel quantizes
QUANTIZED = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
#: calibration text, each row repeated three times and cut to 64 tokens
TEXTS = (
    "The quick brown fox jumps over the lazy dog. A tiny model trains on a tiny corpus.",
    "What is the capital of France? The capital of France is Paris.",
    "Write a short poem about the sea. The sea is blue and the waves are wide.",
    "You are a helpful assistant. Who are you? I am an assistant made to help you.",
)


def tiny_source(folder: Path) -> tuple[Path, Any, Any, Any, Any]:
    """The tiny Llama (:data:`SHAPE`, seed 0) saved in ``folder``, loaded back in float32:
    ``(folder, model, tokenizer, ids, logits)`` with two rows of 16 token ids and the model's
    logits on them."""
    import martlet
    import torch
    from martlet_sdk.tiny import tiny_model, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    tiny_model(seed=0, tokenizer=tokenizer, **SHAPE).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    model, tokenizer = martlet.load_model(str(folder), torch_dtype="float32")
    ids = torch.randint(3, 200, (2, 16), generator=torch.Generator().manual_seed(1))
    return folder, model, tokenizer, ids, logits(model, ids)


def logits(model: Any, ids: Any) -> Any:
    """``model``'s logits on ``ids`` (moved to the model's device), float32 on the CPU."""
    import torch

    with torch.no_grad():
        out = model(input_ids=ids.to(next(model.parameters()).device)).logits
    return out.float().cpu()


def relative(a: Any, b: Any) -> float:
    """The relative error of ``a`` against ``b`` (Frobenius norms)."""
    return float((a - b).norm() / b.norm())


def calibration(tokenizer: Any, texts: Sequence[str] = TEXTS) -> Callable[[int], list[list[int]]]:
    """A calibration callable as ``martlet export`` hands quantizers: ``take(n)``, up to ``n``
    rows of token ids (each text three times, 64 tokens; the rows four times over)."""

    def take(n: int) -> list[list[int]]:
        rows = [tokenizer(t * 3, add_special_tokens=False)["input_ids"][:64] for t in texts]
        return (rows * 4)[:n]

    return take


def quantized_layers(model: Any, layer: str = "BaseQuantLinear") -> list[str]:
    """The names of ``model``'s modules that are gptqmodel's ``qlinear.<layer>``."""
    from gptqmodel.nn_modules import qlinear

    kind = getattr(qlinear, layer)
    return [n for n, m in model.named_modules() if isinstance(m, kind)]


def lora_losses(model: Any, ids: Any, steps: int = 6) -> tuple[Any, list[float]]:
    """``model`` with LoRA (rank 8 on every linear layer, through the registry's ``lora``
    tuner) and the losses of ``steps`` AdamW steps on ``ids``; asserts only the adapter
    trains."""
    import dataclasses
    from types import SimpleNamespace

    import torch
    from martlet.manager import get_manager

    record = get_manager().registry.get("tuners", "lora")
    values = dataclasses.asdict(record.options_class()())
    values.update(lora_rank=8, target_modules=["all-linear"], lora_dropout=0.0)
    model = record.load()().prepare(model, SimpleNamespace(learning_rate=1e-2, **values))
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n, _ in trainable), "only the adapter trains"
    optimizer = torch.optim.AdamW([p for _, p in trainable], lr=1e-2)
    model.train()
    losses = []
    for _ in range(steps):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    return model, losses
