"""The output layer and the cross-entropy as one function, a chunk of rows at a time.

The plain way builds the vocabulary-wide logits of every target position, casts them to fp32,
takes the log-softmax, and in the backward pass fills a zero gradient of the same size, writes
into it and casts it back: for ~570 target positions of a 49k vocabulary that is several
passes over 110 MB tensors, ~10% of a packed LoRA step on a CPU (``bench/RESULTS.md``).
:class:`LinearCrossEntropy` computes each chunk's logits, its summed loss and, while the
chunk is still in cache, its gradient with respect to the hidden states (and to the weight
and bias when they train) — ``softmax - one_hot`` times the weight — so the backward pass only
scales what the forward pass kept, and no vocabulary-wide tensor outlives its chunk (the idea
of Liger Kernel's fused linear cross-entropy, in PyTorch operations).
"""

from __future__ import annotations

from typing import Any

import torch
from martlet.precision import compute_dtype

# rows per chunk: about 4 MiB of fp32 logits (32 rows of a 49k vocabulary), enough rows for
# efficient products; 128-row chunks' logits and probabilities (2 x 25 MB) raised the peak of
# bench/msswift_sft.py by ~35 MB at the same speed
CHUNK_BYTES = 4 << 20
MIN_ROWS = 32


class LinearCrossEntropy(torch.autograd.Function):
    """``sum_i cross_entropy(hidden[i] @ weight.T + bias, targets[i])``, with the gradients
    computed chunk by chunk in the forward pass."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, dtype, need):  # noqa: D102
        need_hidden, need_weight, need_bias = need
        h = hidden.to(dtype)
        w = weight.to(dtype)
        b = bias.to(dtype) if bias is not None else None
        rows = max(MIN_ROWS, CHUNK_BYTES // (4 * w.shape[0]))
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        fp32 = {"dtype": torch.float32, "device": w.device}
        grad_hidden = torch.empty_like(h) if need_hidden else None
        grad_weight = torch.zeros(w.shape, **fp32) if need_weight else None
        grad_bias = torch.zeros(w.shape[0], **fp32) if need_bias else None
        for start in range(0, h.shape[0], rows):
            hc = h[start : start + rows]
            tc = targets[start : start + rows, None]
            logits = torch.mm(hc, w.t()) if b is None else torch.addmm(b, hc, w.t())
            logits = logits.float()
            # softmax is one fused pass (faster on a CPU than logsumexp or exp); the loss is
            # -log p[target], exact through log_softmax where p[target] underflows to 0
            probs = torch.softmax(logits, dim=1)
            picked = probs.gather(1, tc)
            losses = -torch.log(picked)
            lost = picked == 0
            if bool(lost.any()):
                rows_lost = lost.squeeze(1)
                exact = torch.log_softmax(logits[rows_lost], dim=1).gather(1, tc[rows_lost])
                losses[rows_lost] = -exact
            total += losses.sum()
            if not (need_hidden or need_weight or need_bias):
                continue
            # d loss / d logits = softmax - one_hot(target)
            grad = probs.scatter_add_(1, tc, torch.full_like(picked, -1.0))
            if need_bias:
                grad_bias += grad.sum(0)
            grad = grad.to(dtype)
            if need_hidden:
                grad_hidden[start : start + rows] = torch.mm(grad, w)
            if need_weight:
                grad_weight.addmm_(grad.t().float(), hc.float())
        ctx.save_for_backward(grad_hidden, grad_weight, grad_bias)
        ctx.dtypes = (hidden.dtype, weight.dtype, getattr(bias, "dtype", None))
        return total

    @staticmethod
    def backward(ctx, grad_total):  # noqa: D102
        grad_hidden, grad_weight, grad_bias = ctx.saved_tensors
        hidden_dtype, weight_dtype, bias_dtype = ctx.dtypes
        scale = grad_total.to(torch.float32)

        def scaled(grad, dtype):
            return None if grad is None else (grad * scale.to(grad.dtype)).to(dtype)

        return (
            scaled(grad_hidden, hidden_dtype),
            scaled(grad_weight, weight_dtype),
            scaled(grad_bias, bias_dtype),
            None,
            None,
            None,
        )


def linear_cross_entropy(
    hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, targets: torch.Tensor
) -> torch.Tensor:
    """The summed cross-entropy of ``hidden @ weight.T + bias`` (``[n, vocab]`` logits, never
    built whole) against ``targets`` (``[n]``, no ignored entries), in fp32."""
    grad = torch.is_grad_enabled()
    need = (
        grad and hidden.requires_grad,
        grad and weight.requires_grad,
        grad and bias is not None and bias.requires_grad,
    )
    return LinearCrossEntropy.apply(hidden, weight, bias, targets, compute_dtype(hidden), need)


# model types whose causal-LM forward returns the output layer's result unchanged (no logit
# soft-capping or scaling after it), so the loss may take the layer's input instead
PLAIN_HEAD_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3", "phi3", "smollm3"})


def fusable_head(model: Any) -> Any:
    """The output layer of ``model`` (a transformers model or a PEFT wrapper of one) when the
    loss can fuse it with the cross-entropy: a plain ``nn.Linear`` of a model type in
    :data:`PLAIN_HEAD_TYPES`; else None."""
    config = getattr(model, "config", None)
    get_head = getattr(model, "get_output_embeddings", None)
    if getattr(config, "model_type", None) not in PLAIN_HEAD_TYPES or not callable(get_head):
        return None
    head = get_head()
    return head if type(head) is torch.nn.Linear else None


def output_cross_entropy(head: torch.nn.Linear) -> Any:
    """The ``output_cross_entropy`` operation (:data:`martlet.kernels.OPS`) of ``head``: the
    summed cross-entropy of ``head(hidden)`` against ``targets``, chunk by chunk."""

    def loss(hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return linear_cross_entropy(hidden, head.weight, head.bias, targets)

    return loss
