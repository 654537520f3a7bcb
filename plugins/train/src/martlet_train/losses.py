"""The language-modelling objective shared by ``sft`` and ``pt``.

A loss returns the *sum* over target tokens and their count, never a mean: the loop divides by
the number of target tokens in the whole optimizer step (all micro-batches, all ranks), so one
batch of 8 rows and 4 micro-batches of 2 give the same update, and so do 1 rank and 2.
"""

from __future__ import annotations

from typing import Any

IGNORE = -100


def token_cross_entropy(logits: Any, labels: Any) -> tuple[Any, Any]:
    """Summed next-token cross-entropy of ``logits`` against ``labels`` (-100 = ignore).

    Returns ``(loss_sum, target_count)``; ``logits[:, t]`` predicts ``labels[:, t + 1]``.
    """
    import torch.nn.functional as F

    shifted = logits[:, :-1].float()
    targets = labels[:, 1:].to(shifted.device)
    loss = F.cross_entropy(
        shifted.reshape(-1, shifted.size(-1)),
        targets.reshape(-1),
        ignore_index=IGNORE,
        reduction="sum",
    )
    return loss, (targets != IGNORE).sum()


def causal_lm_loss(model: Any, batch: dict[str, Any]) -> tuple[Any, Any, dict[str, float]]:
    """The ``sft``/``pt`` loss: cross-entropy on the tokens whose label is not -100.

    ``batch`` holds ``input_ids``, ``labels`` and ``attention_mask`` or (packed rows)
    ``position_ids``. Returns ``(loss_sum, target_count, metrics)``.
    """
    inputs = {
        k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "position_ids")
    }
    logits = model(**inputs).logits
    labels = batch["labels"]
    if logits.shape[1] != labels.shape[1]:  # prompt tuning prepends virtual tokens
        logits = logits[:, -labels.shape[1] :]
    loss, count = token_cross_entropy(logits, labels)
    return loss, count, {}
