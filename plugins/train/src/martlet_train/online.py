"""Online RL in ``martlet rlhf`` (``--method grpo|rloo|reinforce_pp``): the policy samples
completions to each prompt, reward functions score them, and a loss record of
``inputs="rollouts"`` (martlet-align's, or a third party's) turns scores and log-probabilities
into the update.

A training row is a prompt (a conversation up to its last user turn; a final assistant turn,
where the data has one, is left out) and the row's other columns, which the reward functions
read (``answer``, ``solution``, ...). The training loop hands the objective a micro-batch of
``per_device_train_batch_size / G`` prompts; :meth:`RolloutObjective.prepare` has the live
policy (its current weights, adapter included: the model being trained, never a copy on disk)
sample ``G`` completions to each through an inference backend that continues token ids
(:func:`martlet.api.load_engine`), scores them (:class:`martlet.rewards.Rewards`), computes
without gradients the log-probabilities the loss needs (the sampling policy's, the
reference's) and the advantages, once; then the step computes the loss with gradients. Each
prompt's completions are in one micro-batch, so group statistics are exact on every rank.

With ``num_iterations`` > 1 each generation batch is trained on that many times (steps): the
loop gives the same prompts again and the objective reuses what it sampled, with the sampling
policy's log-probabilities from the first pass (the clipped ratio's denominator).

Evaluation samples one greedy completion per held-out prompt and reports its rewards
(``eval_reward``, per function ``eval_rewards/NAME/mean``); ``eval_loss`` is the negated mean
reward, so early stopping and the best checkpoint follow the reward.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping, Sequence
from typing import Any

from martlet.errors import ConfigError, MartletError

Metrics = dict[str, tuple[float, float]]


def prompt_messages(row: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The conversation a row's completion continues: its messages up to the last
    non-assistant turn (a final assistant answer, a reference solution, is left out)."""
    messages = list(row.get("messages") or ())
    while messages and messages[-1].get("role") == "assistant":
        messages.pop()
    return messages


def encode_prompts(
    rows: Sequence[Mapping[str, Any]],
    template: Any,
    tokenizer: Any,
    *,
    max_prompt_length: int | None,
    dataset: str,
) -> list[dict[str, Any]]:
    """Each row as ``{"input_ids": prompt ids, "messages": prompt, "columns": {...}}``: the
    prompt rendered by the run's template with the generation prompt. Rows whose prompt is
    longer than ``max_prompt_length`` are dropped (an error when none is left)."""
    out = []
    dropped = 0
    for number, row in enumerate(rows, 1):
        messages = prompt_messages(row)
        if not messages:
            raise ConfigError(
                f"row {number} of --dataset {dataset} has no prompt",
                why="online RL samples a completion to each row's conversation (its user "
                "turns); this row has no messages before its answer",
                fix="give rows with `messages` (or a prompt/query column the dataset reader "
                "turns into them)",
            )
        text = template.render(messages, add_generation_prompt=True)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if max_prompt_length and len(ids) > max_prompt_length:
            dropped += 1
            continue
        extra = {k: v for k, v in row.items() if k != "messages"}
        out.append({"input_ids": ids, "messages": messages, "columns": extra})
    if not out:
        raise MartletError(
            f"no prompts left to train on in --dataset {dataset}",
            why=f"all {dropped} prompts are longer than --max-length minus --max-completion-length",
            fix="raise --max-length, or lower --max-completion-length",
        )
    return out


def collate_prompts(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """A micro-batch of prompts as the objective's ``prepare`` takes it (no tensors yet)."""
    return {"prompts": rows}


class RolloutObjective:
    """The training loop's objective for a loss record of ``inputs="rollouts"``."""

    def __init__(
        self,
        algo: Any,
        rewards: Any,
        *,
        tokenizer: Any,
        completions_per_micro_batch: int,
        reference: Any = None,
        sample_every: int = 0,
        samples_file: Any = None,
    ) -> None:
        group = int(algo.group_size)
        if completions_per_micro_batch % group:
            raise ConfigError(
                f"--per-device-train-batch-size {completions_per_micro_batch} does not hold "
                f"whole groups of --num-generations {group}",
                why="a micro-batch holds every completion of its prompts (group statistics)",
                fix=f"pass a multiple of {group}, e.g. --per-device-train-batch-size {group}",
            )
        #: the loop's micro-batches hold this many prompts (each becomes ``group`` rows)
        self.rows_per_micro_batch = completions_per_micro_batch // group
        #: ... and give each step's prompts ``num_iterations`` times
        self.repeats = int(algo.iterations)
        self.algo = algo
        self.rewards = rewards
        self.tokenizer = tokenizer
        self.reference = reference
        self.sample_every = sample_every
        self.samples_file = samples_file
        self.generations = 0
        #: generation batches to train on again (num_iterations): prompts' ids -> rollout
        self.reuse: collections.OrderedDict[tuple, dict[str, Any]] = collections.OrderedDict()

    # ------------------------------------------------------------- the loop's interface

    def count(self, batch: dict[str, Any]) -> int:
        if "completion_mask" in batch:
            return int(self.algo.units(batch["completion_mask"]))
        return len(batch["prompts"])  # evaluation: one greedy completion per prompt

    def prepare(self, model: Any, batch: dict[str, Any]) -> dict[str, Any]:
        """Sample, score and compute the advantages of ``batch``'s prompts (or, with
        ``num_iterations`` > 1, the rollout sampled for the same prompts before)."""
        key = tuple(tuple(p["input_ids"]) for p in batch["prompts"])
        cached = self.reuse.get(key)
        if cached is not None:
            cached["passes"] += 1
            if cached["passes"] >= self.algo.iterations:
                del self.reuse[key]
            return cached["batch"]
        rollout = self._rollout(model, batch["prompts"])
        if self.algo.iterations > 1:
            self.reuse[key] = {"batch": rollout, "passes": 1}
            while len(self.reuse) > 64:  # prompts the data order never gave again
                self.reuse.popitem(last=False)
        return rollout

    def __call__(self, model: Any, batch: dict[str, Any]) -> tuple[Any, Any, Metrics]:
        if "completion_mask" not in batch:
            return self._evaluate(model, batch)
        logps, entropies = token_logps(model, batch, entropies=True)
        loss_sum, count, metrics = self.algo.loss(
            logps,
            batch["completion_mask"],
            batch["advantages"],
            old_logps=batch.get("old_logps"),
            ref_logps=batch.get("ref_logps"),
            entropies=entropies,
        )
        metrics = dict(metrics)
        for name, value in batch["rollout_metrics"].items():
            metrics[name] = (value, 1.0)  # one figure per generation batch, averaged
        return loss_sum, count, metrics

    # ------------------------------------------------------------- pieces

    def _generate(self, model: Any, prompts: list[list[int]], **generation: Any) -> Any:
        from martlet.api import load_engine

        unwrapped = getattr(model, "module", model)
        was_training = unwrapped.training
        try:  # the engine puts the model in eval mode (no dropout while sampling)
            engine = load_engine(unwrapped, self.tokenizer, needs=("token-ids",))
            return engine.generate_ids(prompts, **generation)
        finally:
            unwrapped.train(was_training)

    def _sampling(self) -> dict[str, Any]:
        import torch

        g = dict(self.algo.generation)
        g.pop("do_sample", None)
        self.generations += 1
        # each generation batch its own draw, taken from torch's generator, which --seed
        # seeds and a checkpoint saves: a rerun, and a resumed run, sample the same
        g["seed"] = int(torch.randint(0, 2**31 - 1, (1,)))
        return g

    def _rollout(self, model: Any, prompts: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        group = int(self.algo.group_size)
        ids = [p["input_ids"] for p in prompts for _ in range(group)]
        completions = self._generate(model, ids, **self._sampling())
        texts = [self.tokenizer.decode(c, skip_special_tokens=True) for c in completions]
        rows = [p for p in prompts for _ in range(group)]
        scores = self.rewards(
            prompts=[r["messages"] for r in rows],
            completions=texts,
            completion_ids=completions,
            **_columns(rows),
        )
        device = next(model.parameters()).device
        batch = _sequences(ids, completions, self.tokenizer, device)
        total = [float("nan") if s is None else s for s in scores.total]  # None: no score
        rewards = torch.tensor(total, dtype=torch.float32, device=device)
        mask = batch["completion_mask"]
        with torch.no_grad():
            if self.algo.uses_old_logps:
                batch["old_logps"] = token_logps(model, batch)[0].detach()
            if self.algo.uses_reference:
                batch["ref_logps"] = self._reference_logps(model, batch)
        out = self.algo.advantages(
            rewards, mask, old_logps=batch.get("old_logps"), ref_logps=batch.get("ref_logps")
        )
        batch["advantages"] = out.advantages
        batch["rollout_metrics"] = {**out.metrics, **scores.metrics()}
        self._keep_samples(rows, texts, scores)
        return batch

    def _reference_logps(self, model: Any, batch: dict[str, Any]) -> Any:
        if self.reference is None:
            raise ConfigError(
                "this objective needs a reference model (--beta is not 0)",
                fix="train with a PEFT tuner (--tuner lora), pass --ref-model, or --beta 0",
            )
        with self.reference._network(model) as network:
            return token_logps(network, batch)[0].detach()

    def _evaluate(self, model: Any, batch: dict[str, Any]) -> tuple[Any, Any, Metrics]:
        import torch

        prompts = batch["prompts"]
        generation = {k: v for k, v in self.algo.generation.items() if k != "do_sample"}
        generation["temperature"] = 0.0  # greedy: the policy's best answer
        completions = self._generate(model, [p["input_ids"] for p in prompts], **generation)
        texts = [self.tokenizer.decode(c, skip_special_tokens=True) for c in completions]
        scores = self.rewards(
            prompts=[p["messages"] for p in prompts],
            completions=texts,
            completion_ids=completions,
            **_columns(prompts),
        )
        n = len(prompts)
        total = sum(float(s) for s in scores.total if s is not None)
        metrics: Metrics = {"reward": (total, n)}
        for name, value in scores.metrics().items():
            if name.endswith("/mean"):
                metrics[name] = (value * n, n)
        lengths = [len(c) for c in completions]
        metrics["completions/mean_length"] = (float(sum(lengths)), n)
        return torch.tensor(-total), torch.tensor(n), metrics

    def _keep_samples(self, rows: list[dict[str, Any]], texts: list[str], scores: Any) -> None:
        """Every ``sample_every`` generation batches, its first prompt's completions with
        their rewards, one JSON line each, in the run directory."""
        if not self.sample_every or self.samples_file is None:
            return
        if (self.generations - 1) % self.sample_every:
            return
        import json

        group = int(self.algo.group_size)
        with open(self.samples_file, "a", encoding="utf-8") as f:
            for i in range(min(group, len(texts))):
                line = {
                    "generation": self.generations,
                    "prompt": rows[i]["messages"],
                    "completion": texts[i],
                    "reward": scores.total[i],
                    "rewards": {name: s[i] for name, s in scores.per_func.items()},
                }
                f.write(json.dumps(line, ensure_ascii=False) + "\n")


def _columns(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """The rows' dataset columns, each as a list over the rows (TRL's ``**kwargs``)."""
    names: list[str] = []
    for row in rows:
        for name in row["columns"]:
            if name not in names:
                names.append(name)
    return {name: [row["columns"].get(name) for row in rows] for name in names}


def _sequences(
    prompts: list[list[int]], completions: list[list[int]], tokenizer: Any, device: Any
) -> dict[str, Any]:
    """Prompts left-padded to one width ``W`` and completions right-padded after them, so
    every completion starts at column ``W``: ``input_ids``, ``attention_mask``,
    ``position_ids`` (as generation numbered them) and ``completion_mask`` (``[N, T]``)."""
    import torch

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    width = max(len(p) for p in prompts)
    length = max(1, max(len(c) for c in completions))
    n = len(prompts)
    ids = torch.full((n, width + length), pad, dtype=torch.long)
    attention = torch.zeros((n, width + length), dtype=torch.long)
    completion_mask = torch.zeros((n, length), dtype=torch.float32)
    for i, (p, c) in enumerate(zip(prompts, completions, strict=True)):
        ids[i, width - len(p) : width] = torch.tensor(p, dtype=torch.long)
        attention[i, width - len(p) : width] = 1
        if c:
            ids[i, width : width + len(c)] = torch.tensor(c, dtype=torch.long)
            attention[i, width : width + len(c)] = 1
            completion_mask[i, : len(c)] = 1
    positions = (attention.cumsum(-1) - 1).clamp(min=0)
    return {
        "input_ids": ids.to(device),
        "attention_mask": attention.to(device),
        "position_ids": positions.to(device),
        "completion_mask": completion_mask.to(device),
        "num_tokens": int(attention.sum()),
    }


def token_logps(model: Any, batch: dict[str, Any], *, entropies: bool = False) -> tuple[Any, Any]:
    """The log-probability of each completion token (``[N, T]``) under ``model``, and the
    entropy of its distribution there where asked: only the last ``T + 1`` positions'
    logits are computed (the completions sit at the end of the rows)."""
    import torch

    mask = batch["completion_mask"]
    length = mask.shape[1]
    logits = (
        model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            position_ids=batch["position_ids"],
            logits_to_keep=length + 1,
            use_cache=False,
        )
        .logits[:, :-1]
        .float()
    )
    targets = batch["input_ids"][:, -length:]
    logp_all = torch.log_softmax(logits, dim=-1)
    logps = logp_all.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    entropy = None
    if entropies:
        with torch.no_grad():
            entropy = -(logp_all.exp() * logp_all).sum(-1)
    return logps, entropy
