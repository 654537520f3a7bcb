"""The ``reward_model`` reward: each (prompt, completion) scored by a reward model that
``martlet rlhf --method rm`` trained, loaded from its run directory through the core's API
(:func:`martlet.load_run`, :func:`martlet.load_template`, :func:`martlet.heads.sequence_scores`)
— the conversation encoded with the run's chat template, as it trained."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from martlet.errors import ConfigError
from martlet.rewards import conversation_of, text_of


class RewardModel:
    """The score of a trained reward model's head at each conversation's last token: the
    prompt's messages followed by the completion as the assistant's answer."""

    def __init__(
        self,
        *,
        reward_model: str | None = None,
        reward_model_batch_size: int = 8,
        device: str | None = None,
        **_: Any,
    ) -> None:
        if not reward_model:
            raise ConfigError(
                "the reward_model reward needs --reward-model RUN_DIR",
                why="it scores completions with a reward model trained by "
                "`martlet rlhf --method rm`",
                fix="pass --reward-model with that run's output directory",
            )
        import martlet
        from martlet.runs import read_run

        run = read_run(reward_model)
        if run.config.get("task_type") != "seq_cls":
            raise ConfigError(
                f"{reward_model} trained a language model, not a reward model",
                why="its config.yaml has no `task_type: seq_cls`, so it has no trained score head",
                fix="pass the run directory of `martlet rlhf --method rm` to --reward-model",
            )
        num_labels = int(run.config.get("num_labels") or 1)
        if num_labels != 1:
            raise ConfigError(
                f"the reward model in {reward_model} gives {num_labels} scores per conversation",
                why="a reward is one number per completion",
                fix="train the reward model with --num-labels 1",
            )
        model, tokenizer, run = martlet.load_run(
            reward_model, task_type="seq_cls", num_labels=1, torch_dtype="float32"
        )
        if device:
            model = model.to(device)
        self.model = model.eval()
        self.tokenizer = getattr(tokenizer, "tokenizer", None) or tokenizer
        name, options = run.answered_with(None, {"max_length": None}, None)
        self.template = martlet.load_template(tokenizer, name, **options)
        self.batch_size = reward_model_batch_size
        pad = self.tokenizer.pad_token_id
        if pad is None:
            pad = getattr(model.config, "pad_token_id", None)
        self.pad = pad if pad is not None else self.tokenizer.eos_token_id

    def __call__(
        self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any
    ) -> list[float | None]:
        conversations = [
            [*conversation_of(p), {"role": "assistant", "content": text_of(c)}]
            for p, c in zip(prompts, completions, strict=True)
        ]
        return self.score(conversations)

    def score(self, conversations: list[list[dict[str, Any]]]) -> list[float | None]:
        """The reward of each conversation, scored in batches, right-padded."""
        import torch
        from martlet.heads import sequence_scores

        device = next(self.model.parameters()).device
        encoded = [self.template.encode(m)["input_ids"] for m in conversations]
        out: list[float | None] = []
        for start in range(0, len(encoded), self.batch_size):
            chunk = encoded[start : start + self.batch_size]
            width = max(len(ids) for ids in chunk)
            ids = torch.full((len(chunk), width), self.pad, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for i, row in enumerate(chunk):
                ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
                mask[i, : len(row)] = 1
            with torch.no_grad():
                scores = sequence_scores(self.model, ids.to(device), mask.to(device))
            out.extend(float(s) for s in scores.float().reshape(-1).cpu().tolist())
        return out
