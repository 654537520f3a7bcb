"""The objectives of ``martlet rlhf``: how a batch becomes the inputs of a loss record.

A loss record (``martlet_losses``) is a pure function of log-probabilities, scores or logits
(martlet-align's DPO family, KTO, SimPO, CPO, ORPO, RM, GKD, or a third party's). An objective
here runs the model(s) on a batch, computes those inputs and calls the function. Each objective
is what the training loop calls: ``objective(model, batch) -> (loss_sum, count, metrics)``
with ``count(batch)`` its unit (pairs, rows or target tokens) and metrics as ``(sum, n)``.

Log-probabilities are summed over response tokens only (labels not -100), and the loss function
receives the response lengths to average where its method says so. Chosen and rejected go
through the model in one concatenated forward pass.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator
from typing import Any

from martlet.errors import ConfigError

from martlet_train.losses import IGNORE, target_logits

Metrics = dict[str, tuple[float, float]]


def accepted(fn: Callable[..., Any], options: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``options`` that ``fn``'s signature takes (None values left out, so the
    function's own defaults apply)."""
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return {k: v for k, v in options.items() if v is not None}
    return {k: v for k, v in options.items() if k in params and v is not None}


def sequence_logps(model: Any, batch: dict[str, Any]) -> tuple[Any, Any]:
    """Per-row summed log-probabilities of ``batch``'s label tokens, and their counts."""
    import torch
    import torch.nn.functional as F

    logits, targets, predicts = target_logits(model, batch)
    token_logps = -F.cross_entropy(logits.float(), targets, reduction="none")
    rows = predicts.nonzero()[:, 0].to(logits.device)
    sums = torch.zeros(predicts.shape[0], dtype=token_logps.dtype, device=logits.device)
    sums = sums.index_add(0, rows, token_logps)
    return sums, predicts.sum(1).to(logits.device)


def frozen(model: Any) -> Any:
    """``model`` in eval mode with no parameter requiring gradients (a reference, a teacher)."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


class Reference:
    """The frozen reference policy: a separate model, or the policy with its adapter
    disabled (no second copy in memory)."""

    def __init__(self, model: Any = None) -> None:
        self.model = frozen(model) if model is not None else None

    @contextlib.contextmanager
    def _network(self, policy: Any) -> Iterator[Any]:
        if self.model is not None:
            yield self.model
            return
        unwrapped = getattr(policy, "module", policy)  # DDP
        disable = getattr(unwrapped, "disable_adapter", None)
        if disable is None:
            raise ConfigError(
                "no reference model: the policy has no adapter to disable",
                fix="pass --ref-model, or train with a PEFT tuner (--tuner lora)",
            )
        with disable():
            yield policy

    def logps(self, policy: Any, sequences: dict[str, Any]) -> Any:
        """Summed reference log-probs of the label tokens of ``sequences``, one per row."""
        import torch

        with torch.no_grad(), self._network(policy) as network:
            sums, _ = sequence_logps(network, sequences)
        return sums.detach()


SIDE = ("input_ids", "attention_mask", "labels")


def _side(batch: dict[str, Any], prefix: str) -> dict[str, Any]:
    """One side of ``batch`` (``""``, ``"rejected_"``, ``"kl_"``) as a plain batch."""
    return {key: batch[f"{prefix}{key}"] for key in SIDE}


def _pair_batch(batch: dict[str, Any]) -> dict[str, Any]:
    """Chosen then rejected rows, concatenated into one batch (the collator pads both sides
    to one length)."""
    import torch

    return {key: torch.cat([batch[key], batch[f"rejected_{key}"]]) for key in SIDE}


def _mean_metrics(values: dict[str, float], n: int) -> Metrics:
    return {k: (float(v) * n, float(n)) for k, v in values.items()}


class _PerRow:
    """An objective whose unit is the row (a pair, a KTO row): the step's loss is the mean
    over the rows of the whole step."""

    def count(self, batch: dict[str, Any]) -> int:
        return int(batch["input_ids"].shape[0])


class PreferenceObjective(_PerRow):
    """Paired objectives (``inputs="logps"``, ``data="preference"``): DPO, SimPO, CPO, ORPO."""

    def __init__(
        self,
        loss: Callable[..., Any],
        options: dict[str, Any],
        *,
        reference: Reference | None,
        reference_free: bool = False,
    ) -> None:
        self.loss = loss
        self.options = options
        self.reference = reference
        self.reference_free = reference_free

    def reference_logps(self, model: Any, batch: dict[str, Any]) -> Any:
        """``[pairs, 2]`` reference log-probs (chosen, rejected) of ``batch``."""
        ref = self.reference.logps(model, _pair_batch(batch))  # type: ignore[union-attr]
        return ref.view(2, -1).T

    def __call__(self, model: Any, batch: dict[str, Any]) -> tuple[Any, Any, Metrics]:
        import torch

        logps, lengths = sequence_logps(model, _pair_batch(batch))
        chosen, rejected = logps.chunk(2)
        chosen_len, rejected_len = lengths.chunk(2)
        args: tuple[Any, ...] = (chosen, rejected)
        if self.reference is not None or self.reference_free:
            if self.reference_free:
                ref = torch.zeros(chosen.shape[0], 2, dtype=chosen.dtype, device=chosen.device)
            elif "reference_logps" in batch:
                ref = batch["reference_logps"].to(chosen.device, chosen.dtype)
            else:
                ref = self.reference_logps(model, batch).to(chosen.dtype)
            args = (chosen, rejected, ref[:, 0], ref[:, 1])
        options = {**self.options, "chosen_lengths": chosen_len, "rejected_lengths": rejected_len}
        out = self.loss(*args, **accepted(self.loss, options))
        n = chosen.shape[0]
        cr, rr = out.chosen_rewards.detach().float(), out.rejected_rewards.detach().float()
        metrics: Metrics = {
            "rewards/chosen": (float(cr.sum()), n),
            "rewards/rejected": (float(rr.sum()), n),
            "rewards/accuracy": (float((cr > rr).float().sum()), n),
            "rewards/margin": (float((cr - rr).sum()), n),
            "logps/chosen": (float(chosen.detach().sum()), n),
            "logps/rejected": (float(rejected.detach().sum()), n),
        }
        metrics.update(_mean_metrics(getattr(out, "metrics", {}) or {}, n))
        return out.losses.sum(), torch.tensor(n), metrics


class KtoObjective(_PerRow):
    """Unpaired desirable/undesirable rows (``data="kto"``), with the KL baseline estimated
    from mismatched prompt/completion pairs (``kl_`` columns)."""

    def __init__(self, loss: Callable[..., Any], options: dict[str, Any], reference: Reference):
        self.loss = loss
        self.options = options
        self.reference = reference

    def reference_logps(self, model: Any, batch: dict[str, Any]) -> Any:
        """``[rows, 2]``: the reference log-probs of the completion and of the KL row."""
        import torch

        ref = self.reference.logps(model, _side(batch, ""))
        ref_kl = self.reference.logps(model, _side(batch, "kl_"))
        return torch.stack([ref, ref_kl], dim=1)

    def __call__(self, model: Any, batch: dict[str, Any]) -> tuple[Any, Any, Metrics]:
        import torch

        logps, _ = sequence_logps(model, _side(batch, ""))
        with torch.no_grad():  # the KL baseline is not backpropagated (KTO paper, TRL)
            kl_logps, _ = sequence_logps(model, _side(batch, "kl_"))
        if "reference_logps" in batch:
            ref = batch["reference_logps"].to(logps.device, logps.dtype)
        else:
            ref = self.reference_logps(model, batch).to(logps.dtype)
        labels = batch["label"].to(logps.device).bool()
        out = self.loss(
            logps,
            ref[:, 0],
            labels,
            kl_logps.detach(),
            ref[:, 1],
            **accepted(self.loss, self.options),
        )
        n = logps.shape[0]
        n_good, n_bad = int(labels.sum()), int((~labels).sum())
        metrics: Metrics = {"kl": (float(out.kl) * n, n)}
        if n_good:
            metrics["rewards/chosen"] = (float(out.chosen_rewards.float().sum()), n_good)
            metrics["logps/chosen"] = (float(logps.detach()[labels].sum()), n_good)
        if n_bad:
            metrics["rewards/rejected"] = (float(out.rejected_rewards.float().sum()), n_bad)
            metrics["logps/rejected"] = (float(logps.detach()[~labels].sum()), n_bad)
        return out.losses.sum(), torch.tensor(n), metrics


class RewardObjective(_PerRow):
    """Reward-model training (``inputs="rewards"``): a scalar head scores chosen and rejected,
    the loss (Bradley-Terry) pushes chosen above rejected."""

    def __init__(self, loss: Callable[..., Any], options: dict[str, Any]) -> None:
        self.loss = loss
        self.options = options

    def __call__(self, model: Any, batch: dict[str, Any]) -> tuple[Any, Any, Metrics]:
        import torch
        from martlet.heads import sequence_scores

        pairs = _pair_batch(batch)
        scores = sequence_scores(model, pairs["input_ids"], pairs["attention_mask"]).float()
        chosen, rejected = scores.chunk(2)
        options = dict(self.options)
        if "margin" in batch:
            options["margin"] = batch["margin"].to(scores.device, scores.dtype)
        out = self.loss(chosen, rejected, **accepted(self.loss, options))
        n = chosen.shape[0]
        c, r = chosen.detach(), rejected.detach()
        metrics: Metrics = {
            "rewards/chosen": (float(c.sum()), n),
            "rewards/rejected": (float(r.sum()), n),
            "rewards/accuracy": (float((c > r).float().sum()), n),
            "rewards/margin": (float((c - r).sum()), n),
        }
        return out.losses.sum(), torch.tensor(n), metrics


class DistillObjective:
    """Generalised knowledge distillation (``inputs="logits"``): the student (the policy)
    matches the teacher's token distributions on the data's responses or, with probability
    ``lmbda``, on responses the student generates itself (on-policy)."""

    def __init__(
        self,
        loss: Callable[..., Any],
        options: dict[str, Any],
        *,
        teacher: Any,
        lmbda: float,
        sft_alpha: float,
        generation: dict[str, Any],
        tokenizer: Any,
        collate: Callable[[list[dict[str, Any]]], dict[str, Any]],
        seed: int,
    ) -> None:
        import random

        self.loss = loss
        self.options = options
        self.teacher = frozen(teacher)
        self.lmbda = lmbda
        self.sft_alpha = sft_alpha
        self.generation = generation
        self.tokenizer = tokenizer
        self.collate = collate
        self.random = random.Random(seed)

    def count(self, batch: dict[str, Any]) -> int:
        return int((batch["labels"][:, 1:] != IGNORE).sum())

    def prepare(self, model: Any, batch: dict[str, Any]) -> dict[str, Any]:
        """A training batch as the step sees it: with probability ``lmbda``, the same prompts
        with the student's own responses (the loop counts target tokens after this)."""
        if self.lmbda > 0 and self.random.random() < self.lmbda:
            return {**self.student_batch(model, batch), "on_policy": True}
        return batch

    def __call__(self, model: Any, batch: dict[str, Any]) -> tuple[Any, Any, Metrics]:
        import torch
        import torch.nn.functional as F

        on_policy = bool(batch.get("on_policy", False))
        student, targets, _ = target_logits(model, batch)
        with torch.no_grad():
            teacher, _, _ = target_logits(self.teacher, batch)
        vocab = min(student.shape[-1], teacher.shape[-1])
        loss = self.loss(
            student[:, :vocab].float(),
            teacher[:, :vocab].float(),
            **accepted(self.loss, {**self.options, "reduction": "sum"}),
        )
        n = int(student.shape[0])
        metrics: Metrics = {"jsd": (float(loss.detach()), n), "on_policy": (float(on_policy), 1)}
        if self.sft_alpha:
            nll = F.cross_entropy(student.float(), targets, reduction="sum")
            loss = loss + self.sft_alpha * nll
            metrics["nll"] = (float(nll.detach()), n)
        return loss, torch.tensor(n), metrics

    def student_batch(self, model: Any, batch: dict[str, Any]) -> dict[str, Any]:
        """The batch's prompts with responses the student generates (an installed inference
        backend that continues token ids, on the live model: :func:`martlet.api.load_engine`)."""
        from martlet.api import load_engine

        prompts = []
        for ids, labels, mask in zip(
            batch["input_ids"], batch["labels"], batch["attention_mask"], strict=True
        ):
            real = int(mask.sum())
            start = _response_start(labels[:real].tolist())
            prompts.append(ids[:start].tolist())
        unwrapped = getattr(model, "module", model)
        engine = load_engine(unwrapped, self.tokenizer, needs=("token-ids",))
        try:
            answers = engine.generate_ids(prompts, **self.generation)
        finally:
            unwrapped.train()  # the engine puts the model in eval mode
        rows = [
            {"input_ids": p + a, "labels": [IGNORE] * len(p) + a}
            for p, a in zip(prompts, answers, strict=True)
        ]
        device = batch["input_ids"].device
        return {k: v.to(device) for k, v in self.collate(rows).items()}


def _response_start(labels: list[int]) -> int:
    """Where the last labelled span (the final response) begins."""
    end = len(labels)
    while end > 0 and labels[end - 1] == IGNORE:
        end -= 1
    start = end
    while start > 0 and labels[start - 1] != IGNORE:
        start -= 1
    return start


def last_response_only(row: dict[str, Any], prefix: str = "") -> None:
    """Keep labels only on the last labelled span of ``row`` (the final assistant turn), so
    a multi-turn conversation's log-prob is the response's alone."""
    labels = row[f"{prefix}labels"]
    start = _response_start(labels)
    row[f"{prefix}labels"] = [IGNORE] * start + labels[start:]


def add_kl_rows(rows: list[dict[str, Any]], seed: int, max_length: int | None) -> None:
    """KTO's KL baseline rows: each row's prompt with another row's completion (a seeded
    derangement, as the KTO paper's mismatched pairs)."""
    import random

    if len(rows) < 2:
        raise ConfigError(
            "KTO needs at least two rows",
            why="its KL baseline pairs each prompt with another row's completion",
        )
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    partner = {order[i]: order[(i + 1) % len(order)] for i in range(len(order))}
    for i, row in enumerate(rows):
        other = rows[partner[i]]
        start = _response_start(row["labels"])
        other_start = _response_start(other["labels"])
        ids = row["input_ids"][:start] + other["input_ids"][other_start:]
        labels = [IGNORE] * start + other["labels"][other_start:]
        if max_length is not None and len(ids) > max_length:
            ids, labels = ids[:max_length], labels[:max_length]
        row["kl_input_ids"], row["kl_labels"] = ids, labels
        row["kl_attention_mask"] = [1] * len(ids)
