"""What answers an eval task's requests: a model in this process, or an OpenAI-compatible
endpoint (``--url``).

Both render a request the same way (:meth:`Answerer.context`): plain text
(:func:`martlet.evaluation.plain_prompt`, the tokenizer's BOS text first where its tokenizer
adds one) or the chat template, and the continuation after it. Both split prompt and
continuation tokens by one rule: a token belongs to the continuation when it ends after the
context's last character — in process from the tokenizer's offsets, through ``--url`` from the
``text_offset`` of the echoed prompt — so the same text scores the same tokens either way.
"""

from __future__ import annotations

import json
import math
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from martlet.errors import MartletError
from martlet.evaluation import Generate, Loglikelihood, Scored, plain_prompt

Progress = Callable[[int], None]


def _none(_: int) -> None:
    return None


class Answerer:
    """Renders requests; subclasses answer them."""

    def __init__(self, *, template: Any = None, chat: bool = False, bos: str = "") -> None:
        if chat and template is None:
            raise MartletError(
                "--apply-chat-template needs the model's chat template",
                why="with --url the template comes from a tokenizer here",
                fix="pass --tokenizer ID_OR_PATH (the served model's) or drop "
                "--apply-chat-template",
            )
        self.template = template
        self.chat = chat
        self.bos = bos

    def context(self, conversation: Sequence[Any]) -> str:
        """The prompt text of a request's turns."""
        if self.chat:
            return self.template.render(list(conversation), add_generation_prompt=True)
        return self.bos + plain_prompt(conversation)

    def continuation(self, request: Loglikelihood) -> str:
        """The text scored after the context: one space before it in plain text."""
        return request.continuation if self.chat else " " + request.continuation

    def loglikelihood(
        self, requests: Sequence[Loglikelihood], progress: Progress = _none
    ) -> list[Scored]:
        raise NotImplementedError

    def generate(self, requests: Sequence[Generate], progress: Progress = _none) -> list[str]:
        raise NotImplementedError


def _retry_after(header: str | None) -> float:
    try:
        return min(max(float(header or 1.0), 0.1), 10.0)
    except ValueError:
        return 1.0


def cut(text: str, until: Sequence[str]) -> str:
    """``text`` up to the first of the stop strings ``until``."""
    end = len(text)
    for stop in until:
        if stop:
            found = text.find(stop)
            if found != -1:
                end = min(end, found)
    return text[:end]


# ----------------------------------------------------------------------- in process


class LocalModel(Answerer):
    """A transformers causal LM in this process."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        batch_size: int = 8,
        max_length: int | None = None,
        **render: Any,
    ) -> None:
        super().__init__(**render)
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = max(1, batch_size)
        limit = max_length or getattr(model.config, "max_position_embeddings", None) or 2048
        self.max_length = int(limit)
        self.pad_id = tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    def split(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """The token ids of ``context`` and of ``continuation`` as the whole text tokenizes
        (a token ending after the context's end belongs to the continuation)."""
        whole = context + continuation
        if getattr(self.tokenizer, "is_fast", False):
            enc = self.tokenizer(whole, add_special_tokens=False, return_offsets_mapping=True)
            ids, offsets = list(enc["input_ids"]), enc["offset_mapping"]
            n = next((i for i, (_, end) in enumerate(offsets) if end > len(context)), len(ids))
        else:  # lm-evaluation-harness's rule
            ids = self.tokenizer(whole, add_special_tokens=False)["input_ids"]
            n = len(self.tokenizer(context, add_special_tokens=False)["input_ids"])
        if n >= len(ids):
            raise MartletError(
                f"the continuation {continuation!r} adds no token to its prompt",
                why="an empty continuation cannot be scored",
            )
        return ids[:n], ids[n:]

    def loglikelihood(
        self, requests: Sequence[Loglikelihood], progress: Progress = _none
    ) -> list[Scored]:
        import torch

        # rows to run: (input ids, [(request index, first scored position, target ids)]);
        # the one-token continuations of one context share a row (one forward pass)
        rows: dict[tuple[int, ...], list[tuple[int, int, list[int]]]] = {}
        for i, request in enumerate(requests):
            ctx, cont = self.split(self.context(request.turns), self.continuation(request))
            whole = (ctx + cont)[-(self.max_length + 1) :]
            ctx_len = len(whole) - len(cont)
            if ctx_len < 1:
                raise MartletError(
                    f"a continuation of {len(cont)} tokens leaves no prompt within "
                    f"--max-length {self.max_length}",
                    fix="raise --max-length",
                )
            if len(cont) == 1:
                key = tuple(whole[:ctx_len])
            else:
                key = tuple(whole[:-1]) + (-1 - i,)  # a row of its own
            rows.setdefault(key, []).append((i, ctx_len - 1, cont))
        order = sorted(rows, key=lambda k: -len(k))
        out: list[Scored | None] = [None] * len(requests)
        for start in range(0, len(order), self.batch_size):
            keys = order[start : start + self.batch_size]
            inputs = [[t for t in k if t >= 0] for k in keys]
            width = max(len(x) for x in inputs)
            ids = torch.full((len(inputs), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(inputs), width), dtype=torch.long)
            for r, x in enumerate(inputs):
                ids[r, : len(x)] = torch.tensor(x)
                mask[r, : len(x)] = 1
            with torch.no_grad():
                logits = self.model(
                    input_ids=ids.to(self.device), attention_mask=mask.to(self.device)
                ).logits
            for r, key in enumerate(keys):
                for index, first, cont in rows[key]:
                    span = logits[r, first : first + len(cont)].float().log_softmax(-1)
                    target = torch.tensor(cont, device=span.device)
                    picked = span.gather(1, target[:, None]).squeeze(1)
                    greedy = bool((span.argmax(-1) == target).all())
                    out[index] = Scored(float(picked.sum()), greedy, len(cont))
                    progress(1)
        return [s for s in out if s is not None]

    def generate(self, requests: Sequence[Generate], progress: Progress = _none) -> list[str]:
        import torch

        prompts = [self.tokenizer(self.context(r.turns), add_special_tokens=False)["input_ids"]
                   for r in requests]  # fmt: skip
        groups: dict[tuple[tuple[str, ...], int], list[int]] = {}
        for i, request in enumerate(requests):
            groups.setdefault((request.until, request.max_tokens), []).append(i)
        out = [""] * len(requests)
        for (until, max_tokens), members in groups.items():
            members = sorted(members, key=lambda i: -len(prompts[i]))
            for start in range(0, len(members), self.batch_size):
                batch = members[start : start + self.batch_size]
                width = max(len(prompts[i]) for i in batch)
                ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                for r, i in enumerate(batch):  # left padding: generation continues each row
                    ids[r, width - len(prompts[i]) :] = torch.tensor(prompts[i])
                    mask[r, width - len(prompts[i]) :] = 1
                extra: dict[str, Any] = {}
                if until:
                    extra = {"stop_strings": list(until), "tokenizer": self.tokenizer}
                with torch.no_grad():
                    generated = self.model.generate(
                        input_ids=ids.to(self.device),
                        attention_mask=mask.to(self.device),
                        max_new_tokens=max_tokens,
                        do_sample=False,
                        pad_token_id=self.pad_id,
                        **extra,
                    )
                for r, i in enumerate(batch):
                    text = self.tokenizer.decode(generated[r, width:], skip_special_tokens=True)
                    out[i] = cut(text, until)
                    progress(1)
        return out


# ----------------------------------------------------------------------- an endpoint


class RemoteModel(Answerer):
    """An OpenAI-compatible ``/v1/completions`` endpoint (``martlet deploy``, vLLM, ...):
    log-likelihoods from the echoed prompt's ``logprobs``, generations with ``stop``."""

    def __init__(
        self,
        url: str,
        *,
        model: str | None = None,
        api_key: str | None = None,
        concurrency: int = 4,
        timeout: float = 600.0,
        patience: float = 120.0,
        **render: Any,
    ) -> None:
        super().__init__(**render)
        self.url = url.rstrip("/")
        self.patience = patience
        self.api_key = api_key
        self.concurrency = max(1, concurrency)
        self.timeout = timeout
        self.model = model or self._first_model()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data, headers, method=method)
        waited = 0.0
        while True:
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                    return json.loads(answer.read())
            except urllib.error.HTTPError as exc:
                # a server still loading (503) or with a full queue (429) says when to retry
                if exc.code not in (429, 503) or waited >= self.patience:
                    return self._failed(exc, path)
                pause = _retry_after(exc.headers.get("Retry-After"))
                time.sleep(pause)
                waited += pause
            except (urllib.error.URLError, OSError) as exc:
                raise MartletError(
                    f"cannot reach {self.url}{path}",
                    why=str(getattr(exc, "reason", exc)),
                    fix="check --url (e.g. http://127.0.0.1:8000/v1) and that the server runs",
                ) from None

    def _failed(self, exc: urllib.error.HTTPError, path: str) -> Any:
        """Raise the endpoint's error as a MartletError (its OpenAI envelope's message)."""
        detail = exc.read().decode(errors="replace")
        try:
            detail = json.loads(detail)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            pass
        fix = "pass --api-key KEY" if exc.code == 401 else "check --url and --model"
        raise MartletError(
            f"{self.url}{path} answered HTTP {exc.code}", why=str(detail)[:500], fix=fix
        ) from None

    def _first_model(self) -> str:
        listed = self._call("GET", "/models").get("data") or []
        if not listed:
            raise MartletError(f"{self.url}/models lists no model", fix="pass --model NAME")
        return str(listed[0]["id"])

    def _map(self, fn: Callable[[Any], Any], items: Sequence[Any], progress: Progress) -> list:
        def one(item: Any) -> Any:
            result = fn(item)
            progress(1)
            return result

        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(one, items))

    def _score(self, request: Loglikelihood) -> Scored:
        context = self.context(request.turns)
        prompt = context + self.continuation(request)
        body = {
            "model": self.model,
            "prompt": prompt,
            "max_tokens": 1,
            "temperature": 0,
            "echo": True,
            "logprobs": 1,
        }
        answer = self._call("POST", "/completions", body)
        choice = answer["choices"][0]
        logprobs = choice.get("logprobs") or {}
        tokens = logprobs.get("tokens") or []
        values = logprobs.get("token_logprobs") or []
        top = logprobs.get("top_logprobs") or [None] * len(tokens)
        if not tokens or len(tokens) != len(values):
            raise MartletError(
                f"{self.url} returned no log-probabilities for the echoed prompt",
                why="scoring a choice needs echo with logprobs on /v1/completions",
                fix="use a server that supports them (martlet deploy, vLLM)",
            )
        # The prompt's tokens are the first usage.prompt_tokens (the generated one follows);
        # the continuation's are counted back from there by their text. Offsets are not
        # used: a character split over byte-level tokens shifts them.
        end = (answer.get("usage") or {}).get("prompt_tokens")
        if not isinstance(end, int) or not 0 < end <= len(tokens):
            text = str(choice.get("text") or "")
            generated = len(text) - len(prompt) if text.startswith(prompt) else 0
            end = len(tokens)
            while end > 0 and (generated > 0 or tokens[end - 1] == ""):
                end -= 1
                generated -= len(tokens[end])
        need = len(prompt) - len(context)
        total, count, greedy, covered = 0.0, 0, True, 0
        index = end
        while index > 0 and covered < need:
            index -= 1
            token, value, best = tokens[index], values[index], top[index]
            covered += len(token)
            total += -math.inf if value is None else float(value)
            count += 1
            if best:
                greedy = greedy and max(best, key=best.get) == token
        if count == 0 or covered < need:
            raise MartletError(
                f"{self.url} echoed no token of the continuation {request.continuation!r}"
            )
        return Scored(total, greedy, count)

    def loglikelihood(
        self, requests: Sequence[Loglikelihood], progress: Progress = _none
    ) -> list[Scored]:
        return self._map(self._score, requests, progress)

    def _generate(self, request: Generate) -> str:
        body: dict[str, Any] = {
            "model": self.model,
            "prompt": self.context(request.turns),
            "max_tokens": request.max_tokens,
            "temperature": 0,
        }
        if request.until:
            body["stop"] = list(request.until)[:4]  # the OpenAI API takes up to four
        text = self._call("POST", "/completions", body)["choices"][0].get("text") or ""
        return cut(text, request.until)

    def generate(self, requests: Sequence[Generate], progress: Progress = _none) -> list[str]:
        return self._map(self._generate, requests, progress)
