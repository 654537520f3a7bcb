"""Continuous batching for a server: many requests decoded together, joining between steps.

:class:`BatchingEngine` (:class:`martlet.interfaces.ServingEngine`) runs one scheduler thread.
Requests wait in a bounded queue; between two decoding steps the scheduler admits as many as the
batch has room for, prefills them together (left-padded, one forward pass: each gets its first
token) and merges their key/value caches into the running batch's (left-padded to a common
length, the attention mask marking the padding). Each decoding step is then one forward pass of
every running request's last token, each at its own position; every request samples with its own
settings and random stream, and its stream gets the new token at once. A finished, cancelled or
failed request leaves the batch at the next step (its cache rows dropped, padding columns every
remaining row shares trimmed). Decoding B requests together reads the weights once per step
instead of B times: on a CPU, where a small model's decoding is bound by memory bandwidth, that
is most of the batch's speed-up (``bench/serve_load.py``).

Adapters: ``adapters={"name": folder}`` loads PEFT LoRA adapters beside the base model, and the
rows of one batch may use different ones (PEFT's mixed-adapter batches).
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from martlet.errors import ConfigError, MartletError, brief
from martlet.generation import (
    EngineStoppedError,
    QueueFullError,
    SamplingParams,
    Step,
    Stream,
    TokenLogprob,
    checked_prompt,
)

log = logging.getLogger("martlet.engine_pt")

BASE = "__base__"  # PEFT's name for "no adapter" in a mixed-adapter batch
#: temperatures below this decode greedily, as vLLM does (dividing by them overflows)
MIN_TEMPERATURE = 1e-5


@dataclass(eq=False)
class _Request:
    """One request: what was asked, and where it stands."""

    prompt: list[int]
    params: SamplingParams
    stream: Stream
    adapter: str | None
    generator: torch.Generator | None = None
    output: list[int] = field(default_factory=list)
    length: int = 0  # real tokens in the cache (prompt + output fed back)
    #: its last step is decided (set before its stream can see it): it holds no slot, though
    #: its row leaves the batch only at the next retire
    done: bool = False
    queued: float = field(default_factory=time.perf_counter)


class BatchingEngine:
    """Serve ``model`` (a transformers causal LM, or a PEFT model with named adapters) with
    continuous batching.

    Args:
        model, tokenizer: what generates.
        max_batch_size: the most requests decoded together.
        max_queued_requests: the most requests waiting for a slot; more are refused with
            :class:`~martlet.generation.QueueFullError`.
        max_model_len: the most tokens a request may hold (default: the model's
            ``max_position_embeddings``).
        kernels: the inference kernels switched into the model while it is served
            (``--kernels``: ``auto``, ``none``, ``auto,-NAME`` or names;
            :func:`martlet.kernels.chosen` with ``use="infer"``), e.g. martlet-kernels'
            ``packed-linear`` for bfloat16 on the CPU.
        own_adapter: the PEFT adapter of ``model`` that is part of the model served (a
            training run's result): requests that name no adapter decode with it, and it is
            not among :meth:`adapters`.
        compile: decode with the model compiled by ``torch.compile`` (see
            :func:`compiled_decoder`); compiled and warmed up before the constructor returns.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        max_batch_size: int = 16,
        max_queued_requests: int = 256,
        max_model_len: int | None = None,
        kernels: Any = "auto",
        own_adapter: str | None = None,
        compile: bool = False,  # noqa: A002 - the option's name (--compile)
    ) -> None:
        if max_batch_size < 1:
            raise ConfigError(f"--max-batch-size must be at least 1, got {max_batch_size}")
        if max_queued_requests < 0:
            raise ConfigError(f"--max-queued-requests must be 0 or more, got {max_queued_requests}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_batch_size = max_batch_size
        self.max_queued_requests = max_queued_requests
        config = getattr(model, "config", None)
        limit = getattr(config, "max_position_embeddings", None) or 2048
        self.max_model_len = int(max_model_len or limit)
        self.device = next(model.parameters()).device
        self.vocab_size = int(model.get_output_embeddings().weight.shape[0])
        self._eos = set(_eos_ids(model, tokenizer))
        self._pad = tokenizer.pad_token_id
        if self._pad is None:
            self._pad = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
        self._own_adapter = own_adapter
        loaded = _adapter_names(model)
        self._adapters = [a for a in loaded if a != own_adapter]
        if compile and loaded:
            raise ConfigError(
                "--compile serves a model without adapters",
                why="rows of one batch choose their adapters at run time, which a compiled "
                "graph cannot",
                fix="merge the adapter into its model (martlet export --merge-lora) and serve "
                "that, or drop --compile",
            )
        self._compile = compile
        self._decoder: Any = None  # the compiled model decoding steps use (None: the model)
        self._cache_argument = _cache_argument(model)
        self._waiting: collections.deque[_Request] = collections.deque()
        self._running: list[_Request] = []
        self._cache: Any = None
        self._mask: torch.Tensor | None = None  # [B, T] 1 = real token
        self._cv = threading.Condition()
        self._accepting = True
        self._stopping = False
        self._ids = itertools.count()
        self.steps = 0  #: decoding steps run (for tests and benchmarks)
        self.batch_sizes: collections.Counter[int] = collections.Counter()
        self._kernels = contextlib.ExitStack()
        self.kernels: dict[str, int] = {}  #: kernel name -> layers switched
        # Every tensor operation of serving runs on the scheduler thread, the kernels'
        # set-up included: see _off_the_main_thread for why.
        ready: list[BaseException | None] = []
        self._thread = threading.Thread(
            target=self._run, args=(kernels, ready), name="martlet-batching", daemon=True
        )
        self._thread.start()
        with self._cv:
            self._cv.wait_for(lambda: ready)
        if ready[0] is not None:
            self._thread.join()
            raise ready[0]

    def _run(self, kernels: Any, ready: list[BaseException | None]) -> None:
        try:
            if self._compile:  # inductor packs the weights itself: no kernels switched in
                self._decoder = compiled_decoder(self.model)
                try:
                    self._warm_up()
                except MartletError:
                    raise
                except Exception as exc:  # noqa: BLE001 - the compiler's failure, explained
                    raise MartletError(
                        "--compile could not compile the decoding step",
                        why=brief(exc),
                        fix="serve without --compile (inductor needs a C++ compiler on a CPU: "
                        "apt install g++)",
                        cause=exc,
                    ) from exc
            else:
                self.kernels = self._apply_kernels(kernels)
        except BaseException as exc:  # noqa: BLE001 - raised in the constructor's thread
            error: BaseException | None = exc
        else:
            error = None
        with self._cv:
            ready.append(error)
            self._cv.notify_all()
        if error is None:
            self._loop()

    def _warm_up(self) -> None:
        """Compile the decoding step before the first request needs it: a batch of one row,
        and a full one (PyTorch compiles a dimension of size 1 apart; the full batch's sizes
        are those the kernels are tuned for)."""
        started = time.perf_counter()
        params = SamplingParams(max_tokens=3, ignore_eos=True)
        with torch.inference_mode():
            for rows in sorted({1, self.max_batch_size}):
                group = [_Request([self._pad] * 4, params, Stream(), None) for _ in range(rows)]
                self._admit(group)
                while self._running:
                    self._decode()
                    self._retire()
        self.steps = 0
        self.batch_sizes.clear()
        log.info("compiled the decoding step in %.0f s", time.perf_counter() - started)

    def _apply_kernels(self, spec: Any) -> dict[str, int]:
        from martlet.kernels import applied

        dtype = str(next(self.model.parameters()).dtype).removeprefix("torch.")
        return self._kernels.enter_context(
            applied(self.model, spec, device=self.device.type, dtype=dtype, use="infer")
        )

    # ------------------------------------------------------------------ construction

    @classmethod
    def serving(
        cls,
        model: str,
        *,
        adapters: Mapping[str, str] | None = None,
        device: str | None = None,
        torch_dtype: str = "auto",
        model_loader: str | None = None,
        loader_options: Mapping[str, Any] | None = None,
        max_model_len: int | None = None,
        max_batch_size: int | None = None,
        max_queued_requests: int | None = None,
        kernels: Any = "auto",
        compile: bool = False,  # noqa: A002 - the option's name (--compile)
        **_: Any,
    ) -> BatchingEngine:
        """Load ``model`` (a model id or folder, or a training run directory: its base model
        with its result, which requests naming no adapter get) and ``adapters`` (name -> PEFT
        adapter folder or LoRA run directory), and serve them
        (:class:`martlet.interfaces.ServingEngine`)."""
        import martlet
        from martlet.runs import is_run, load_run

        def load() -> tuple[Any, Any, str | None]:
            options = dict(loader_options or {})
            if torch_dtype and torch_dtype != "auto":
                options["torch_dtype"] = torch_dtype
            options.setdefault("torch_dtype", _inference_dtype(device))  # may probe the device
            if device:
                from martlet.devices import place

                options.setdefault("device_map", place(device).torch_device)
            if model_loader and model_loader != "auto":
                options["loader"] = model_loader
            own = None
            if is_run(model):
                loaded, tokenizer, _ = load_run(model, **options)
                if _adapter_names(loaded):  # the run trained a PEFT adapter: it is the model
                    own = loaded.active_adapter
            else:
                loaded, tokenizer = martlet.load_model(model, **options)
            if adapters:
                loaded = load_adapters(loaded, adapters)
            return loaded, tokenizer, own

        loaded, tokenizer, own = _off_the_main_thread(load)
        return cls(
            loaded,
            tokenizer,
            max_batch_size=max_batch_size or 16,
            max_queued_requests=256 if max_queued_requests is None else max_queued_requests,
            max_model_len=max_model_len,
            kernels=kernels,
            own_adapter=own,
            compile=compile,
        )

    # ------------------------------------------------------------------ the interface

    def adapters(self) -> list[str]:
        return list(self._adapters)

    def submit(
        self,
        prompt_ids: Sequence[int],
        params: SamplingParams,
        *,
        adapter: str | None = None,
        request_id: str = "",
    ) -> Stream:
        prompt = checked_prompt(
            prompt_ids,
            params,
            vocab_size=self.vocab_size,
            max_model_len=self.max_model_len,
            adapter=adapter,
            adapters=self._adapters,
        )
        stream = Stream(request_id or f"req-{next(self._ids)}")
        request = _Request(prompt, params, stream, adapter, generator=_generator(params.seed))
        with self._cv:
            if not self._accepting:
                raise EngineStoppedError()
            if len(self._waiting) >= self.max_queued_requests + self._free_slots():
                raise QueueFullError(
                    f"{len(self._waiting)} requests are already waiting",
                    fix="retry shortly, or raise --max-queued-requests",
                )
            self._waiting.append(request)
            self._cv.notify_all()
        return stream

    def shutdown(self, drain: bool = True) -> None:
        with self._cv:
            self._accepting = False
            if not drain:
                for request in [*self._waiting, *self._running]:
                    request.stream.cancel()
            self._stopping = True
            self._cv.notify_all()
        self._thread.join()
        self._kernels.close()

    # ------------------------------------------------------------------ the scheduler

    def _free_slots(self) -> int:
        """Slots no request holds: a request whose answer is complete frees its slot at once,
        so a client that reads its last token and asks again is not refused while the row
        waits to leave the batch."""
        holding = sum(1 for r in list(self._running) if not (r.done or r.stream.cancelled))
        return max(0, self.max_batch_size - holding)

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._waiting and not self._running and not self._stopping:
                    self._cv.wait()
                if self._stopping and not self._waiting and not self._running:
                    return
                admitted = []
                while self._waiting and len(self._running) + len(admitted) < self.max_batch_size:
                    admitted.append(self._waiting.popleft())
            try:
                with torch.inference_mode():
                    self._drop_cancelled(admitted)
                    if admitted:
                        self._admit(admitted)
                    self._retire()
                    if self._running:
                        self._decode()
                        self._retire()
            except Exception as exc:  # noqa: BLE001 - every request of the batch gets it
                log.exception("the batch failed")
                self._fail_all(exc, admitted)

    def _drop_cancelled(self, admitted: list[_Request]) -> None:
        for request in list(admitted):
            if request.stream.cancelled:
                admitted.remove(request)
                request.stream.put(Step([], finish_reason="abort"))
                request.stream.close()

    def _fail_all(self, exc: Exception, admitted: list[_Request]) -> None:
        error = (
            exc
            if isinstance(exc, MartletError)
            else MartletError("generation failed", why=f"{type(exc).__name__}: {exc}", cause=exc)
        )
        for request in {*admitted, *self._running}:
            request.stream.close(error)
        self._running, self._cache, self._mask = [], None, None

    # prefill ---------------------------------------------------------------

    def _admit(self, requests: list[_Request]) -> None:
        """Prefill ``requests`` (those asking for prompt log-probs one by one, with every
        position's logits), give each its first token and merge them into the batch."""
        plain = [r for r in requests if r.params.prompt_logprobs is None]
        groups = [plain] if plain else []
        groups += [[r] for r in requests if r.params.prompt_logprobs is not None]
        for group in groups:
            width = max(len(r.prompt) for r in group)
            ids = torch.full((len(group), width), self._pad, dtype=torch.long)
            mask = torch.zeros((len(group), width), dtype=torch.long)
            for i, r in enumerate(group):
                ids[i, width - len(r.prompt) :] = torch.tensor(r.prompt)
                mask[i, width - len(r.prompt) :] = 1
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            everything = group[0].params.prompt_logprobs is not None
            logits, cache = self._forward(
                ids, mask, positions, None, group, keep=0 if everything else 1
            )
            if everything:
                r = group[0]
                r.stream.put(Step([], prompt_logprobs=self._prompt_logprobs(logits[0], r)))
            for r in group:
                r.length = len(r.prompt)
            self._merge(cache, mask, group)
            self._emit(group, logits[:, -1, :])

    def _prompt_logprobs(self, logits: torch.Tensor, request: _Request) -> list[Any]:
        """Each prompt token's log-probability given the ones before (the first: None)."""
        k = request.params.prompt_logprobs or 0
        n = len(request.prompt)
        scores = torch.log_softmax(logits[-n:-1].float(), dim=-1)
        targets = torch.tensor(request.prompt[1:])
        picked = scores.gather(1, targets[:, None])[:, 0].tolist()
        tops = scores.topk(k, dim=-1) if k else None
        out: list[Any] = [None]
        for i, token in enumerate(request.prompt[1:]):
            top = (
                list(zip(tops.indices[i].tolist(), tops.values[i].tolist(), strict=True))
                if tops is not None
                else []
            )
            out.append(TokenLogprob(token, picked[i], top))
        return out

    def _merge(self, cache: Any, mask: torch.Tensor, group: list[_Request]) -> None:
        """Add ``group``'s cache rows to the batch, both left-padded to the longer."""
        if self._cache is None or not self._running:
            self._cache, self._mask = cache, mask.to(self.device)
            self._running = list(group)
            return
        old, new = self._mask.shape[1], mask.shape[1]
        width = max(old, new)
        layers_old, layers_new = _layers(self._cache), _layers(cache)
        for a, b in zip(layers_old, layers_new, strict=True):
            a.keys = torch.cat([_pad_left(a.keys, width), _pad_left(b.keys, width)], dim=0)
            a.values = torch.cat([_pad_left(a.values, width), _pad_left(b.values, width)], dim=0)
        self._mask = torch.cat(
            [_pad_left(self._mask, width, dim=1), _pad_left(mask.to(self.device), width, dim=1)]
        )
        self._running.extend(group)

    # decode ----------------------------------------------------------------

    def _decode(self) -> None:
        batch = self._running
        ids = torch.tensor([[r.output[-1]] for r in batch], dtype=torch.long)
        positions = torch.tensor([[r.length] for r in batch], dtype=torch.long)
        ones = torch.ones((len(batch), 1), dtype=self._mask.dtype, device=self.device)
        self._mask = torch.cat([self._mask, ones], dim=1)
        logits, self._cache = self._forward(ids, self._mask, positions, self._cache, batch, keep=1)
        for r in batch:
            r.length += 1
        self.steps += 1
        self.batch_sizes[len(batch)] += 1
        self._emit(batch, logits[:, -1, :])

    def _forward(
        self,
        ids: torch.Tensor,
        mask: torch.Tensor,
        positions: torch.Tensor,
        cache: Any,
        rows: list[_Request],
        *,
        keep: int,
    ) -> tuple[torch.Tensor, Any]:
        """The logits of the last ``keep`` positions (0: all) and the cache, updated."""
        kwargs: dict[str, Any] = {}
        if self._adapters:
            kwargs["adapter_names"] = [r.adapter or self._own_adapter or BASE for r in rows]
        if cache is None:
            from transformers import DynamicCache

            cache = DynamicCache(config=self.model.config)
        kwargs[self._cache_argument] = cache
        decoding = ids.shape[1] == 1 and self._decoder is not None and keep == 1
        out = (self._decoder if decoding else self.model)(
            input_ids=ids.to(self.device),
            attention_mask=mask.to(self.device),
            position_ids=positions.to(self.device),
            use_cache=True,
            logits_to_keep=keep,
            **kwargs,
        )
        return out.logits, cache

    # sampling --------------------------------------------------------------

    def _emit(self, rows: list[_Request], logits: torch.Tensor) -> None:
        """Choose each row's next token, hand it to its stream, and mark the finished."""
        logits = logits.float()
        greedy = logits.argmax(dim=-1).tolist()
        raw = None
        if any(r.params.logprobs is not None for r in rows):
            raw = torch.log_softmax(logits, dim=-1)
        for i, r in enumerate(rows):
            p = r.params
            if p.temperature >= MIN_TEMPERATURE or _penalised(p):
                token = _sample(logits[i], r)
            else:
                token = greedy[i]
            r.output.append(token)
            logprobs = None
            if raw is not None and p.logprobs is not None:
                top = []
                if p.logprobs:
                    values, indices = raw[i].topk(p.logprobs)
                    top = list(zip(indices.tolist(), values.tolist(), strict=True))
                logprobs = [TokenLogprob(token, float(raw[i, token]), top)]
            finish = None
            if (token in self._eos and not p.ignore_eos) or token in p.stop_token_ids:
                finish = "stop"
            elif len(r.output) >= p.max_tokens or r.length + 1 >= self.max_model_len:
                finish = "length"
            r.done = finish is not None
            r.stream.put(Step([token], logprobs=logprobs, finish_reason=finish))
            if finish is not None:
                r.stream.close()

    def _retire(self) -> None:
        """Drop the rows of finished and cancelled requests from the batch."""
        keep = []
        for i, r in enumerate(self._running):
            if r.stream.closed:
                continue
            if r.stream.cancelled:
                r.stream.put(Step([], finish_reason="abort"))
                r.stream.close()
                continue
            keep.append(i)
        if len(keep) == len(self._running):
            return
        if not keep:
            self._running, self._cache, self._mask = [], None, None
            return
        index = torch.tensor(keep, device=self.device)
        self._running = [self._running[i] for i in keep]
        self._mask = self._mask[index]
        start = int((self._mask.cumsum(dim=1) == 0).sum(dim=1).min())  # shared left padding
        self._mask = self._mask[:, start:]
        for layer in _layers(self._cache):
            layer.keys = layer.keys[index, :, start:]
            layer.values = layer.values[index, :, start:]


# ---------------------------------------------------------------------- helpers


def compiled_decoder(model: Any) -> Any:
    """``model`` compiled for decoding steps by ``torch.compile`` (inductor).

    Shapes are dynamic (the batch and the cache grow and shrink between steps). The weights
    are frozen into the graph (``freezing``: packed once for the CPU's matrix units, the
    packed-linear kernel's work), projections that read the same input are concatenated
    (q/k/v, gate/up: fewer, larger products), kernels are chosen by measuring them
    (``max_autotune``) and the graph runs from C++ (``cpp_wrapper``): on 2 cores, SmolLM2-135M
    decodes one row in 12 ms instead of 27 (``bench/RESULTS.md``). The model must not change
    while served (frozen weights are copies).
    """
    import torch._inductor.config as inductor

    settings = {"freezing": True, "max_autotune": True, "coordinate_descent_tuning": True}
    if next(model.parameters()).device.type == "cpu":
        settings.update({"cpp_wrapper": True, "cpp.enable_concat_linear": True})
    compiled = torch.compile(model, dynamic=True)

    def decode(**inputs: Any) -> Any:
        # inductor reads its settings when it compiles, which may be any call (a recompile);
        # the same settings given as torch.compile(options=...) decoded in 24 ms, not 12
        with inductor.patch(settings):
            return compiled(**inputs)

    return decode


def _off_the_main_thread(work: Any) -> Any:
    """``work()`` run on a thread of its own, which then ends; its result (or exception).

    PyTorch computes on the CPU with OpenMP, and GNU OpenMP keeps a pool of worker threads for
    each thread that has run a parallel region; once there are more of them than cores, every
    worker stops spinning between regions and sleeps, and each of the thousands of small
    operations of a decoding step waits for one to wake (measured on 2 cores: a decoding step
    of SmolLM2-135M 54-57 ms instead of 27, ``bench/RESULTS.md``). A thread that ends frees its
    pool. So the main thread, which serves HTTP, never computes: the model loads here, and the
    scheduler thread does the rest.
    """
    result: list[Any] = []
    error: list[BaseException] = []

    def run() -> None:
        try:
            result.append(work())
        except BaseException as exc:  # noqa: BLE001 - raised in the caller's thread
            error.append(exc)

    thread = threading.Thread(target=run, name="martlet-loading")
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


def _layers(cache: Any) -> list[Any]:
    """The cache's layers, each with ``keys`` and ``values`` of ``[batch, heads, length,
    dim]``; refuses caches that cannot be merged row by row (sliding windows, states)."""
    from transformers.cache_utils import DynamicLayer

    layers = list(getattr(cache, "layers", ()))
    if not layers or any(type(layer) is not DynamicLayer for layer in layers):
        raise MartletError(
            "this model's cache cannot be batched by the PyTorch engine",
            why="continuous batching merges plain key/value caches; this model uses "
            f"{sorted({type(layer).__name__ for layer in layers}) or 'no'} cache layers",
            fix="serve it with --max-batch-size 1, or with another --infer-backend",
        )
    return layers


def _pad_left(tensor: torch.Tensor, width: int, dim: int = 2) -> torch.Tensor:
    missing = width - tensor.shape[dim]
    if missing <= 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)


def _penalised(p: SamplingParams) -> bool:
    return bool(p.presence_penalty or p.frequency_penalty or p.repetition_penalty != 1.0)


def _sample(logits: torch.Tensor, request: _Request) -> int:
    """The next token of ``request`` from its row of logits, with its penalties, temperature,
    top-k and top-p, from its own random stream."""
    p = request.params
    logits = logits.clone()
    if _penalised(p):
        seen = torch.tensor(request.output, dtype=torch.long)
        if p.repetition_penalty != 1.0:
            context = torch.tensor(request.prompt + request.output, dtype=torch.long).unique()
            picked = logits[context]
            logits[context] = torch.where(
                picked > 0, picked / p.repetition_penalty, picked * p.repetition_penalty
            )
        if len(seen) and (p.presence_penalty or p.frequency_penalty):
            counts = torch.bincount(seen, minlength=logits.shape[0]).to(logits.dtype)
            logits -= p.frequency_penalty * counts + p.presence_penalty * (counts > 0).float()
    if p.temperature < MIN_TEMPERATURE:  # greedy (a tinier one would overflow the logits)
        return int(logits.argmax())
    logits /= p.temperature
    if p.top_k:
        k = min(p.top_k, logits.shape[0])
        threshold = logits.topk(k).values[-1]
        logits[logits < threshold] = float("-inf")
    probs = torch.softmax(logits, dim=-1)
    if p.top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)
        cumulative = sorted_probs.cumsum(0)
        cut = cumulative - sorted_probs > p.top_p  # keep the smallest set reaching top_p
        sorted_probs[cut] = 0
        probs = torch.zeros_like(probs).scatter_(0, order, sorted_probs)
    return int(torch.multinomial(probs, 1, generator=request.generator))


def _generator(seed: int | None) -> torch.Generator:
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(int(seed))
    return generator


def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
    ids: set[int] = set()
    config_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(config_eos, int):
        ids.add(config_eos)
    elif config_eos:
        ids.update(int(i) for i in config_eos)
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return sorted(ids)


def _cache_argument(model: Any) -> str:
    """``cache`` (transformers 5.2x) or ``past_key_values`` (older): what the model's forward
    calls the key/value cache."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    try:
        parameters = inspect.signature(type(base).forward).parameters
    except (TypeError, ValueError):
        return "past_key_values"
    return "cache" if "cache" in parameters else "past_key_values"


def _adapter_names(model: Any) -> list[str]:
    config = getattr(model, "peft_config", None)
    return sorted(config) if isinstance(config, dict) else []


def _inference_dtype(device: str | None) -> str:
    from martlet.precision import resolve

    return resolve(device=device or "cpu", inference=True).torch_dtype


def load_adapters(model: Any, adapters: Mapping[str, str]) -> Any:
    """``model`` with each PEFT adapter folder (or LoRA run directory) of ``adapters`` loaded
    under its name."""
    from pathlib import Path

    from peft import PeftModel

    for name, folder in adapters.items():
        if not (Path(folder) / "adapter_config.json").is_file():
            raise ConfigError(
                f"adapter {name!r}: {folder} holds no PEFT adapter (adapter_config.json)",
                fix="pass a LoRA run directory or a PEFT adapter folder",
            )
        if isinstance(model, PeftModel):
            model.load_adapter(folder, adapter_name=name)
        else:
            model = PeftModel.from_pretrained(model, folder, adapter_name=name)
    return model.eval()
