"""One implementation of a request's life, for the server and the Python API alike.

:class:`Service` holds a serving engine (:class:`martlet.interfaces.ServingEngine`) and the
models it serves by name (the base model and each adapter, each with its chat template). It
checks a parsed request (:mod:`martlet_serve.openai_schema`) against its :class:`Limits`,
renders it into prompt token ids and :class:`~martlet.generation.SamplingParams`, submits one
stream per choice and returns a :class:`Job`: the whole response (:meth:`Job.response`) or its
chunks (:meth:`Job.chunks`), in OpenAI's wire format (:mod:`martlet_serve.responses`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from martlet.generation import SamplingParams, Step, TokenLogprob

from martlet_serve.api_errors import ApiError, from_engine, log, text_of
from martlet_serve.detokenize import Detokenizer, StopStrings, TokenTexts
from martlet_serve.openai_schema import ChatCompletionRequest, CompletionRequest

#: at most this many stop strings per request, each at most MAX_STOP_CHARS long
MAX_STOPS = 16
MAX_STOP_CHARS = 256
#: a temperature below this decodes greedily (logits divided by it would overflow)
MIN_TEMPERATURE = 1e-5
_SEEDS = 2**64


@dataclass(kw_only=True)
class Limits:
    """The bounds a request must keep (the ``--max-*`` options of ``martlet deploy``)."""

    max_tokens: int = 4096
    max_n: int = 16
    max_top_logprobs: int = 20


@dataclass
class ServedModel:
    """A name clients put in ``model``: the base model or one adapter, and its chat template
    (loaded on first use)."""

    name: str
    adapter: str | None
    root: str  #: what it was loaded from
    template_name: str | None = None
    template_options: dict[str, Any] = field(default_factory=dict)
    template: Any = None


@dataclass
class Piece:
    """What one choice produced since its last piece: text, the tokens released with it
    (``(token_id, logprob or None)``; None for a prompt's first token), and why it ended."""

    text: str
    tokens: list[tuple[int, TokenLogprob | None]] = field(default_factory=list)
    finish_reason: str | None = None


class Choice:
    """One stream of an engine, turned into :class:`Piece` s of text (stop strings cut)."""

    def __init__(
        self,
        index: int,
        stream: Any,
        detokenizer: Detokenizer,
        stops: Sequence[str],
        *,
        logprobs: bool,
        prompt: Prompt,
        echo: bool = False,
        discard: bool = False,
    ) -> None:
        self.index = index
        self.stream = stream
        self.prompt = prompt
        self._detok = detokenizer
        self._stops = StopStrings(stops)
        self._logprobs = logprobs
        self._echo = echo
        self._discard = discard  # echo with max_tokens 0: the one token decoded is dropped
        self.generated = 0
        self.offset = 0  # text_offset of the next token (legacy log-probabilities, streamed)
        self.text = ""
        self.tokens: list[tuple[int, TokenLogprob | None]] = []
        self.finish_reason: str | None = None

    async def pieces(self) -> AsyncIterator[Piece]:
        """The pieces of the answer as they come; the last has the finish reason. With
        ``echo`` the first piece is the prompt (with its log-probabilities where asked).
        Leaving early (an error, the client gone) cancels the stream."""
        try:
            pending: list[tuple[int, TokenLogprob | None]] = []
            echoed = not self._echo
            async for step in self.stream:
                if not echoed:
                    echoed = True
                    yield self._keep(self._echo_piece(step.prompt_logprobs))
                piece = self._step(step, pending)
                if piece is not None:
                    pending = []
                    yield self._keep(piece)
                if self.finish_reason is not None:
                    return
            if self.finish_reason is None:  # closed without a finish reason: aborted
                yield self._keep(Piece("", pending, "abort"))
        finally:
            self.stream.cancel()  # a no-op once the engine has finished it

    def _echo_piece(self, prompt_logprobs: list[Any] | None) -> Piece:
        entries: list[tuple[int, TokenLogprob | None]] = []
        if self._logprobs:
            given = list(prompt_logprobs or [])
            given += [None] * (len(self.prompt.ids) - len(given))
            entries = list(zip(self.prompt.ids, given, strict=False))
        return Piece(self.prompt.text, entries)

    def _step(self, step: Step, pending: list[tuple[int, TokenLogprob | None]]) -> Piece | None:
        if self._discard:
            return Piece("", [], "length") if step.finish_reason else None
        self.generated += len(step.token_ids)
        if self._logprobs:
            given = step.logprobs or []
            pending.extend(
                (t, given[i] if i < len(given) else None) for i, t in enumerate(step.token_ids)
            )
        text, stopped = self._stops.feed(self._detok.add(step.token_ids))
        finish = "stop" if stopped else step.finish_reason
        if finish is not None and not stopped:
            more, stopped = self._stops.feed(self._detok.flush())
            text += more
            if not stopped:
                more, stopped = self._stops.flush()
                text += more
            if stopped:
                finish = "stop"
        if text or finish is not None:
            return Piece(text, list(pending), finish)
        return None

    def _keep(self, piece: Piece) -> Piece:
        self.text += piece.text
        self.tokens.extend(piece.tokens)
        if piece.finish_reason is not None:
            self.finish_reason = piece.finish_reason
        return piece

    def cancel(self) -> None:
        self.stream.cancel()


@dataclass
class Prompt:
    """One prompt: its token ids, and its text (what ``echo`` returns)."""

    ids: list[int]
    text: str


@dataclass
class Job:
    """A request submitted to the engine: its choices, and how to answer with them."""

    kind: str  #: "chat" or "completion"
    id: str
    model: str
    prompts: list[Prompt]
    choices: list[Choice]
    texts: TokenTexts
    logprobs: int | None
    stream_usage: bool = False
    created: int = field(default_factory=lambda: int(time.time()))

    def cancel(self) -> None:
        """Stop every choice (the client went away)."""
        for choice in self.choices:
            choice.cancel()

    def usage(self) -> dict[str, int]:
        prompt = sum(len(p.ids) for p in self.prompts)
        completion = sum(c.generated for c in self.choices)
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    async def response(self) -> dict[str, Any]:
        """The whole response, once every choice has ended."""
        from martlet_serve import responses

        try:
            await asyncio.gather(*(_drain(c) for c in self.choices))
        except ApiError:
            raise
        except Exception as exc:
            raise from_engine(exc) from exc
        finally:
            self.cancel()
        return responses.whole(self)

    async def chunks(self) -> AsyncIterator[dict[str, Any]]:
        """The response's chunks as the choices produce them (interleaved when ``n`` > 1),
        then, with ``stream_options.include_usage``, one with the usage and no choices."""
        from martlet_serve import responses

        queue: asyncio.Queue[tuple[Choice, Any]] = asyncio.Queue()

        async def pump(choice: Choice) -> None:
            try:
                async for piece in choice.pieces():
                    await queue.put((choice, piece))
            except Exception as exc:  # noqa: BLE001 - handed to the consumer
                await queue.put((choice, exc))
            finally:
                await queue.put((choice, None))

        tasks = [asyncio.ensure_future(pump(c)) for c in self.choices]
        try:
            for choice in self.choices:
                first = responses.first_chunk(self, choice)
                if first is not None:
                    yield first
            running = len(tasks)
            while running:
                choice, item = await queue.get()
                if item is None:
                    running -= 1
                elif isinstance(item, BaseException):
                    raise item if isinstance(item, ApiError) else from_engine(item)
                else:
                    yield responses.chunk(self, choice, item)
            if self.stream_usage:
                yield responses.usage_chunk(self)
        finally:
            for task in tasks:
                task.cancel()
            self.cancel()


async def _drain(choice: Choice) -> None:
    async for _ in choice.pieces():
        pass


class Service:
    """Answers OpenAI requests with ``engine`` (see the module's docstring).

    Args:
        engine: a :class:`martlet.interfaces.ServingEngine`.
        models: the served models; the first is the default (a request without ``model``).
        limits: the request bounds.
    """

    def __init__(self, engine: Any, models: Sequence[ServedModel], limits: Limits) -> None:
        if not models:
            raise ValueError("a service serves at least one model")
        self.engine = engine
        self.tokenizer = engine.tokenizer
        self.models = {m.name: m for m in models}
        self.default = models[0].name
        self.limits = limits
        self.texts = TokenTexts(self.tokenizer)
        self.created = int(time.time())

    # ------------------------------------------------------------------ models

    def model(self, name: str | None) -> ServedModel:
        """The served model called ``name`` (None: the default).

        Raises:
            ApiError: 404, naming the served models.
        """
        found = self.models.get(name if name is not None else self.default)
        if found is None:
            served = ", ".join(self.models)
            raise ApiError(
                404,
                f"the model {name!r} does not exist (this server serves: {served})",
                param="model",
                code="model_not_found",
            )
        return found

    def list_models(self) -> dict[str, Any]:
        base = self.models[self.default]
        rows = []
        for m in self.models.values():
            rows.append(
                {
                    "id": m.name,
                    "object": "model",
                    "created": self.created,
                    "owned_by": "martlet",
                    "root": m.root,
                    "parent": None if m is base or m.adapter is None else base.name,
                    "max_model_len": int(self.engine.max_model_len),
                }
            )
        return {"object": "list", "data": rows}

    def template(self, model: ServedModel) -> Any:
        if model.template is None:
            import martlet

            try:
                model.template = martlet.load_template(
                    self.tokenizer, model.template_name, **model.template_options
                )
            except Exception as exc:
                raise from_engine(exc) from exc
        return model.template

    # ------------------------------------------------------------------ requests

    def chat(self, request: ChatCompletionRequest) -> Job:
        """Submit a chat request; raises :class:`ApiError` (400, 404, 429, 503)."""
        model = self.model(request.model)
        newer = request.max_completion_tokens is not None  # OpenAI's newer name wins
        max_tokens = request.max_completion_tokens if newer else request.max_tokens
        param = "max_completion_tokens" if newer else "max_tokens"
        self._check_common(request, max_tokens, param)
        top = request.top_logprobs
        if top is not None and not request.logprobs:
            raise ApiError(400, "top_logprobs needs logprobs: true", param="top_logprobs")
        self._check_top(top or 0, "top_logprobs")
        prompt = self._chat_prompt(model, request.messages)
        logprobs = (top or 0) if request.logprobs else None
        params = self._params(request, max_tokens, len(prompt.ids), "messages", logprobs)
        job = self._job("chat", request, model, [prompt], logprobs)
        self._submit(job, model, request, [params], "messages")
        return job

    def completion(self, request: CompletionRequest) -> Job:
        """Submit a completion request (one or several prompts, text or token ids)."""
        model = self.model(request.model)
        max_tokens = 16 if request.max_tokens is None else request.max_tokens
        score_only = request.echo and max_tokens == 0  # the prompt's log-probs, no answer
        self._check_common(request, 1 if score_only else max_tokens, "max_tokens")
        if request.logprobs is not None:
            self._check_top(request.logprobs, "logprobs")
        prompts = self._prompts(request.prompt)
        per_prompt = []
        for prompt in prompts:
            params = self._params(
                request,
                1 if score_only else max_tokens,
                len(prompt.ids),
                "prompt",
                request.logprobs,
            )
            if request.echo and request.logprobs is not None:
                params.prompt_logprobs = request.logprobs
            per_prompt.append(params)
        job = self._job("completion", request, model, prompts, request.logprobs)
        self._submit(
            job, model, request, per_prompt, "prompt", echo=request.echo, discard=score_only
        )
        return job

    # ------------------------------------------------------------------ checks

    def _check_common(self, request: Any, max_tokens: int | None, param: str) -> None:
        limits = self.limits
        if max_tokens is not None and not 1 <= max_tokens <= limits.max_tokens:
            rule = "at least 1" if max_tokens < 1 else f"at most {limits.max_tokens} on this server"
            raise ApiError(400, f"{param} must be {rule}, got {max_tokens}", param=param)
        if not 1 <= request.n <= limits.max_n:
            raise ApiError(
                400, f"n must be between 1 and {limits.max_n} on this server, got {request.n}",
                param="n",
            )  # fmt: skip
        checks = [
            (request.temperature is None or 0 <= request.temperature <= 2, "temperature",
             request.temperature, "between 0 and 2"),
            (request.top_p is None or 0 < request.top_p <= 1, "top_p", request.top_p,
             "more than 0 and at most 1"),
            (request.top_k is None or request.top_k >= -1, "top_k", request.top_k,
             "-1 or 0 (off), or a positive number"),
            (-2 <= request.presence_penalty <= 2, "presence_penalty", request.presence_penalty,
             "between -2 and 2"),
            (-2 <= request.frequency_penalty <= 2, "frequency_penalty",
             request.frequency_penalty, "between -2 and 2"),
            (request.repetition_penalty is None or 0.01 <= request.repetition_penalty <= 10,
             "repetition_penalty", request.repetition_penalty, "between 0.01 and 10"),
            (request.seed is None or -(2**63) <= request.seed < 2**64, "seed", request.seed,
             "a 64-bit integer"),
        ]  # fmt: skip
        for ok, name, value, rule in checks:
            if not ok:
                raise ApiError(400, f"{name} must be {rule}, got {value!r}", param=name)
        stops = _stops(request.stop)
        if len(stops) > MAX_STOPS:
            raise ApiError(400, f"at most {MAX_STOPS} stop strings, got {len(stops)}", param="stop")
        if any(not s or len(s) > MAX_STOP_CHARS for s in stops):
            raise ApiError(
                400, f"each stop string must be 1 to {MAX_STOP_CHARS} characters", param="stop"
            )
        if request.stream_options is not None and not request.stream:
            raise ApiError(400, "stream_options needs stream: true", param="stream_options")

    def _check_top(self, value: int, param: str) -> None:
        if not 0 <= value <= self.limits.max_top_logprobs:
            raise ApiError(
                400,
                f"{param} must be between 0 and {self.limits.max_top_logprobs} on this server, "
                f"got {value}",
                param=param,
            )

    # ------------------------------------------------------------------ prompts

    def _chat_prompt(self, model: ServedModel, messages: Sequence[Any]) -> Prompt:
        if not messages:
            raise ApiError(400, "messages must hold at least one message", param="messages")
        conversation = []
        for m in messages:
            content = m.content
            if isinstance(content, list):
                content = "\n".join(part.text for part in content)
            role = "system" if m.role == "developer" else m.role
            conversation.append({"role": role, "content": content or ""})
        template = self.template(model)
        try:
            text = template.render(conversation, add_generation_prompt=True)
        except Exception as exc:  # a template refusing a conversation (roles out of order)
            reason = text_of(exc) if hasattr(exc, "what") else f"{type(exc).__name__}: {exc}"
            raise ApiError(
                400, f"the chat template cannot render these messages: {reason}", param="messages"
            ) from exc
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return Prompt(list(ids), text)

    def _prompts(self, prompt: Any) -> list[Prompt]:
        if isinstance(prompt, str):
            items: list[Any] = [prompt]
        elif prompt and all(isinstance(p, int) for p in prompt):
            items = [prompt]
        else:
            items = list(prompt)
        if not items:
            raise ApiError(400, "prompt must hold at least one prompt", param="prompt")
        out = []
        for item in items:
            if isinstance(item, str):
                ids = list(self.tokenizer(item)["input_ids"])
                text = item
            else:
                ids = [int(t) for t in item]
                vocab = len(self.tokenizer)
                if any(not 0 <= t < vocab for t in ids):
                    raise ApiError(
                        400,
                        f"prompt holds token ids outside the vocabulary (0 to {vocab - 1})",
                        param="prompt",
                    )
                text = self.tokenizer.decode(ids, clean_up_tokenization_spaces=False)
            if not ids:
                raise ApiError(400, "a prompt has no tokens", param="prompt")
            out.append(Prompt(ids, text))
        return out

    # ------------------------------------------------------------------ decoding

    def _params(
        self,
        request: Any,
        max_tokens: int | None,
        prompt_len: int,
        param: str,
        logprobs: int | None,
    ) -> SamplingParams:
        room = int(self.engine.max_model_len) - prompt_len
        if room < 1:
            raise ApiError(
                400,
                f"the prompt is {prompt_len} tokens; this model takes at most "
                f"{self.engine.max_model_len} tokens, prompt and answer together",
                param=param,
                code="context_length_exceeded",
            )
        wanted = self.limits.max_tokens if max_tokens is None else max_tokens
        temperature = 1.0 if request.temperature is None else request.temperature
        if temperature < MIN_TEMPERATURE:  # dividing by it would overflow: greedy, as vLLM
            temperature = 0.0
        return SamplingParams(
            max_tokens=min(wanted, room),  # clipped to the context, as vLLM does
            temperature=temperature,
            top_p=1.0 if request.top_p is None else request.top_p,
            top_k=max(0, request.top_k or 0),
            seed=request.seed,
            presence_penalty=request.presence_penalty,
            frequency_penalty=request.frequency_penalty,
            repetition_penalty=request.repetition_penalty or 1.0,
            ignore_eos=request.ignore_eos,
            logprobs=logprobs,
        )

    def _job(
        self, kind: str, request: Any, model: ServedModel, prompts: list[Prompt], logprobs: Any
    ) -> Job:
        prefix = "chatcmpl-" if kind == "chat" else "cmpl-"
        usage = bool(
            request.stream and request.stream_options and request.stream_options.include_usage
        )
        return Job(
            kind=kind,
            id=prefix + uuid.uuid4().hex,
            model=model.name,
            prompts=prompts,
            choices=[],
            texts=self.texts,
            logprobs=logprobs,
            stream_usage=usage,
        )

    def _submit(
        self,
        job: Job,
        model: ServedModel,
        request: Any,
        per_prompt: list[SamplingParams],
        param: str,
        *,
        echo: bool = False,
        discard: bool = False,
    ) -> None:
        """One stream per prompt and choice (``index = prompt * n + choice``); if any is
        refused, those already submitted are cancelled."""
        stops = _stops(request.stop)
        try:
            for p, (prompt, base) in enumerate(zip(job.prompts, per_prompt, strict=True)):
                for i in range(request.n):
                    this = base
                    if base.seed is not None and i:  # n different samples, each reproducible
                        this = dataclasses.replace(base, seed=(base.seed + i) % _SEEDS)
                    stream = self.engine.submit(
                        prompt.ids, this, adapter=model.adapter, request_id=f"{job.id}-{p}-{i}"
                    )
                    job.choices.append(
                        Choice(
                            p * request.n + i,
                            stream,
                            Detokenizer(self.tokenizer, prompt.ids),
                            stops,
                            logprobs=job.logprobs is not None,
                            prompt=prompt,
                            echo=echo,
                            discard=discard,
                        )
                    )
        except Exception as exc:
            job.cancel()
            error = from_engine(exc, param, submitting=True)
            if error.status >= 500:
                log.error("submitting %s failed", job.id, exc_info=exc)
            raise error from exc
        log.info(
            "%s: %s, %d prompt tokens, %d choices, max_tokens %d",
            job.id,
            model.name,
            sum(len(p.ids) for p in job.prompts),
            len(job.choices),
            per_prompt[0].max_tokens,
        )


def _stops(stop: str | list[str] | None) -> list[str]:
    if stop is None:
        return []
    return [stop] if isinstance(stop, str) else list(stop)
