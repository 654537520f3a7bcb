"""Task heads: the scores of a sequence classification (reward) model at each row's last
real token — the contract between whatever loads a ``task_type="seq_cls"`` model (a model
loader) and whatever scores with it (``rlhf --method rm``, ``infer --task reward``).

A seq_cls model is one whose head is a module named ``score`` producing one value (or
``num_labels`` values) per position, as transformers' ``*ForSequenceClassification`` do.
torch is imported inside the functions only.

transformers' ``*ForSequenceClassification`` pool the head's output at the last token that is
not ``config.pad_token_id`` — wrong when the pad token is also EOS and the text ends with it,
and dependent on the config. :func:`sequence_scores` takes the attention mask instead: it
captures the head's per-position output with a forward hook on the ``score`` module and picks
position ``attention_mask.sum(1) - 1`` of each (right-padded) row (after the virtual tokens
prompt tuning prepends, if any). Gradients flow, so training uses it as well as inference.
"""

from __future__ import annotations

from typing import Any

from martlet.errors import ConfigError


def score_module(model: Any) -> Any:
    """The head of a sequence classification model: the module whose name ends with ``score``
    (the shortest such name, so ``base_model.model.score`` — PEFT's ModulesToSaveWrapper —
    rather than the copies inside it).

    Raises:
        ConfigError: the model has no ``score`` module.
    """
    found = [
        (name, module)
        for name, module in model.named_modules()
        if name == "score" or name.endswith(".score")
    ]
    if not found:
        raise ConfigError(
            f"{type(model).__name__} has no scalar head (a module named 'score')",
            why="sequence scores come from a sequence classification model's head",
            fix="load the model with task_type='seq_cls' (--task-type seq_cls)",
        )
    return min(found, key=lambda item: len(item[0]))[1]


def last_token_index(attention_mask: Any) -> Any:
    """Index of each row's last real token, ``attention_mask.sum(1) - 1``.

    Raises:
        ConfigError: a row is padded on the left (or has holes), or has no real token.
    """
    import torch

    mask = attention_mask.long()
    lengths = mask.sum(dim=1)
    if bool((lengths < 1).any()):
        raise ConfigError("a row to score has no tokens (its attention mask is all zeros)")
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    expected = (positions < lengths.unsqueeze(1)).long()
    if not torch.equal(mask, expected):
        raise ConfigError(
            "the rows to score must be padded on the right",
            why="a row's attention mask is not ones followed by zeros (left padding?)",
            fix="pad on the right (tokenizer.padding_side = 'right')",
        )
    return lengths - 1


def sequence_scores(model: Any, input_ids: Any, attention_mask: Any, **kwargs: Any) -> Any:
    """The head's value at the last real token of each row: a tensor of shape ``(batch,)``
    (``(batch, num_labels)`` for a head of more than one output).

    Args:
        model: a sequence classification model (``task_type='seq_cls'``), PEFT-wrapped or not.
        input_ids: ``(batch, length)`` token ids, padded on the right.
        attention_mask: ``(batch, length)``, ones then zeros in each row.
        kwargs: passed on to the model's forward.

    Keeps the graph: call it under ``torch.no_grad()`` for inference.

    Raises:
        ConfigError: no ``score`` module, or a row that is not right-padded.
    """
    import torch

    index = last_token_index(attention_mask)
    head = score_module(model)
    captured: list[Any] = []

    def hook(module: Any, args: Any, output: Any) -> None:
        captured.append(output)

    handle = head.register_forward_hook(hook)
    try:
        model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
    finally:
        handle.remove()
    if not captured:
        raise ConfigError(
            f"the head of {type(model).__name__} was not called in its forward pass",
            fix="score with a transformers *ForSequenceClassification model",
        )
    logits = captured[-1]  # (batch, length, num_labels)
    # prompt tuning prepends virtual tokens: the real ones come after them
    offset = logits.shape[1] - attention_mask.shape[1]
    if logits.dim() != 3 or offset < 0:
        raise ConfigError(
            f"the head of {type(model).__name__} gave an output of shape "
            f"{tuple(logits.shape)}, not one value per position",
            fix="score with a transformers *ForSequenceClassification model",
        )
    rows = torch.arange(logits.shape[0], device=logits.device)
    scores = logits[rows, index.to(logits.device) + offset]
    return scores.squeeze(-1) if scores.shape[-1] == 1 else scores
