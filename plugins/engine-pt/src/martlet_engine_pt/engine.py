"""Generation with transformers: batched, KV-cached, greedy or sampled, streamed."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from martlet.errors import ConfigError


@dataclass
class Completion:
    """One answer: its text, why it ended (``stop`` or ``length``) and token counts."""

    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


@dataclass(kw_only=True)
class GenerationOptions:
    """Sampling settings; ``temperature`` 0 means greedy."""

    max_new_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    repetition_penalty: float = 1.0
    stop: Sequence[str] = ()
    seed: int | None = None

    def check(self) -> None:
        if self.max_new_tokens <= 0:
            raise ConfigError(f"--max-new-tokens must be positive, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ConfigError(f"--temperature must be 0 (greedy) or more, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"--top-p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ConfigError(f"--top-k must be 0 (off) or more, got {self.top_k}")
        if self.repetition_penalty <= 0:
            raise ConfigError("--repetition-penalty must be positive")


class PtEngine:
    """Chat generation for a loaded model.

    Args:
        model: a causal LM (``transformers``), possibly with a PEFT adapter.
        tokenizer: its tokenizer.
        template: a chat template (``martlet.load_template``); by default the tokenizer's.
    """

    @classmethod
    def serving(cls, model: str, **options: Any) -> Any:
        """The engine ``martlet deploy`` serves with: continuous batching
        (:class:`martlet_engine_pt.serving.BatchingEngine`, a
        :class:`martlet.interfaces.ServingEngine`)."""
        from martlet_engine_pt.serving import BatchingEngine

        return BatchingEngine.serving(model, **options)

    def __init__(self, model: Any, tokenizer: Any, template: Any = None, **_: Any) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self._template = template
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token

    @property
    def template(self) -> Any:
        """The chat template conversations are rendered with (the tokenizer's own unless one
        was given), loaded when a conversation first needs it: ``generate_ids`` never does."""
        if self._template is None:
            import martlet

            self._template = martlet.load_template(self.tokenizer)
        return self._template

    # ----------------------------------------------------------------- helpers

    def _options(self, overrides: dict[str, Any]) -> GenerationOptions:
        options = GenerationOptions(**overrides)
        options.stop = tuple(options.stop or ())
        options.check()
        return options

    def _prompt_ids(self, messages: Sequence[dict]) -> list[int]:
        text = self.template.render(list(messages), add_generation_prompt=True)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _generate_kwargs(self, options: GenerationOptions) -> dict[str, Any]:
        kwargs: dict[str, Any] = dict(
            max_new_tokens=options.max_new_tokens,
            repetition_penalty=options.repetition_penalty,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self._eos_ids(),
        )
        if options.temperature > 0:
            kwargs.update(
                do_sample=True,
                temperature=options.temperature,
                top_p=options.top_p,
                top_k=options.top_k or None,
            )
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if options.stop:
            kwargs.update(stop_strings=list(options.stop), tokenizer=self.tokenizer)
        return kwargs

    def _eos_ids(self) -> list[int]:
        ids = set()
        config_eos = getattr(self.model.generation_config, "eos_token_id", None)
        if isinstance(config_eos, int):
            ids.add(config_eos)
        elif config_eos:
            ids.update(config_eos)
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        return sorted(ids)

    def _seed(self, options: GenerationOptions) -> None:
        if options.seed is not None:
            import torch

            torch.manual_seed(options.seed)

    def _finish(self, text: str, new_ids: list[int], options: GenerationOptions) -> tuple[str, str]:
        for stop in options.stop:
            at = text.find(stop)
            if at >= 0:
                return text[:at], "stop"
        eos = set(self._eos_ids())
        if new_ids and new_ids[-1] in eos:
            return text, "stop"
        return text, "length" if len(new_ids) >= options.max_new_tokens else "stop"

    # ----------------------------------------------------------------- API

    def generate(self, requests: Sequence[Sequence[dict]], **generation: Any) -> list[Completion]:
        """Answer each conversation in ``requests`` (all in one batch, left-padded)."""
        options = self._options(generation)
        prompts = [self._prompt_ids(m) for m in requests]
        completions = []
        for prompt, new in zip(prompts, self._generate_ids(prompts, options), strict=True):
            text = self.tokenizer.decode(new, skip_special_tokens=True)
            text, reason = self._finish(text, new, options)
            completions.append(Completion(text, reason, len(prompt), len(new)))
        return completions

    def generate_ids(self, prompts: Sequence[Sequence[int]], **generation: Any) -> list[list[int]]:
        """Continue each prompt of token ids (all in one batch, left-padded).

        Takes the same generation options as :meth:`generate` (``max_new_tokens``,
        ``temperature``, ``top_p``, ``top_k``, ``repetition_penalty``, ``stop``, ``seed``).

        Returns:
            Each prompt's new token ids, ending after the first EOS token (which is included
            when it was generated); padding is removed. A stop string ends generation but is
            not cut from the ids.

        Raises:
            ConfigError: a bad generation option, or an empty prompt.
        """
        options = self._options(generation)
        prompts = [[int(t) for t in p] for p in prompts]
        if any(not p for p in prompts):
            raise ConfigError("a prompt to continue has no tokens", fix="give at least one token")
        return self._generate_ids(prompts, options)

    def _generate_ids(
        self, prompts: list[list[int]], options: GenerationOptions
    ) -> list[list[int]]:
        import torch

        if not prompts:
            return []
        width = max(len(p) for p in prompts)
        pad = self.tokenizer.pad_token_id
        device = next(self.model.parameters()).device
        ids = torch.full((len(prompts), width), pad, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, p in enumerate(prompts):
            ids[i, width - len(p) :] = torch.tensor(p)
            mask[i, width - len(p) :] = 1
        self._seed(options)
        with torch.no_grad():
            out = self.model.generate(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                **self._generate_kwargs(options),
            )
        eos = set(self._eos_ids())
        results = []
        for i in range(len(prompts)):
            new = out[i, width:].tolist()
            # drop padding after the end
            while new and new[-1] == pad and pad not in eos:
                new.pop()
            for j, token in enumerate(new):
                if token in eos:
                    new = new[: j + 1]
                    break
            results.append(new)
        return results

    def stream(self, messages: Sequence[dict], **generation: Any) -> Iterator[str]:
        """Answer one conversation piece by piece, as tokens are generated."""
        import torch
        from transformers import TextIteratorStreamer

        options = self._options(generation)
        prompt = self._prompt_ids(messages)
        device = next(self.model.parameters()).device
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        kwargs = self._generate_kwargs(options)
        ids = torch.tensor([prompt], device=device)
        errors: list[BaseException] = []

        def work() -> None:
            try:
                with torch.no_grad():
                    self.model.generate(
                        input_ids=ids,
                        attention_mask=torch.ones_like(ids),
                        streamer=streamer,
                        **kwargs,
                    )
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                errors.append(exc)
                streamer.end()

        self._seed(options)
        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        # text that could still become a stop string is held back until it cannot
        keep = max((len(stop) - 1 for stop in options.stop), default=0)
        buffer, stopped = "", False
        for piece in streamer:
            buffer += piece
            hits = [buffer.find(stop) for stop in options.stop if stop in buffer]
            if hits:
                if min(hits) > 0:
                    yield buffer[: min(hits)]
                stopped = True
                break
            ready = len(buffer) - keep
            if ready > 0:
                yield buffer[:ready]
                buffer = buffer[ready:]
        if stopped:
            for _ in streamer:  # let generation finish (it stops at the stop string too)
                pass
        elif buffer:
            yield buffer
        thread.join()
        if errors:
            raise errors[0]
