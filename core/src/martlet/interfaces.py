"""What an implementation of each kind must offer.

A record's ``impl`` resolves to an object satisfying the protocol of its kind. The protocols
name no torch type at import time (models, tensors and devices are ``Any`` here); the SDK's
contract tests check behaviour, not just shape. These grow as the capabilities land; a change
that breaks an existing implementation bumps :data:`martlet.PLUGIN_API`.

How ``impl`` is used, per kind:

=====================  ===========================================================
kind                   ``record.load()`` returns
=====================  ===========================================================
accelerators           a class; ``cls()`` is an :class:`Accelerator`
model_loaders          a class; ``cls()`` is a :class:`ModelLoader`
templates              a class; ``cls(tokenizer, **options)`` is a :class:`Template`
dataset_sources        a class; ``cls()`` is a :class:`DatasetSource`
tuners                 a class; ``cls()`` is a :class:`Tuner`
losses                 a function of log-probabilities or a :class:`Loss` class
quantizers             a class; ``cls()`` is a :class:`Quantizer`
inference_backends     a class; ``cls(model, tokenizer, **options)`` is an :class:`InferenceEngine`
parallel_strategies    a class; ``cls()`` is a :class:`ParallelStrategy`
eval_tasks             a class; ``cls()`` is an :class:`EvalTask`
callbacks              a class; ``cls(**options)`` is a :class:`Callback`
commands               a ``click.Command``
=====================  ===========================================================
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

Message = Mapping[str, Any]
"""One chat message: ``{"role": "user", "content": "..."}`` (OpenAI style)."""


@runtime_checkable
class Accelerator(Protocol):
    """A device kind (cpu, cuda, mps, xpu, npu, ...)."""

    device_type: str

    def is_available(self) -> bool:
        """Whether at least one device of this kind can be used now."""

    def device_count(self) -> int:
        """How many devices of this kind there are (0 when unavailable)."""

    def device(self, index: int = 0) -> Any:
        """The ``torch.device`` of device ``index``."""

    def supported_dtypes(self) -> list[str]:
        """Floating dtypes usable for training here, e.g. ``["float32", "bfloat16"]``."""

    def preferred_dtype(self) -> str:
        """The fastest dtype that trains reliably on this device."""

    def memory_stats(self, index: int = 0) -> dict[str, int]:
        """Bytes ``total`` and ``free`` (and ``allocated`` where known) of device ``index``."""

    def distributed_backend(self) -> str:
        """The ``torch.distributed`` backend for this device kind (``gloo``, ``nccl``, ...)."""

    def manual_seed(self, seed: int) -> None:
        """Seed this device kind's random generators."""

    def synchronize(self) -> None:
        """Wait for queued work on the current device."""


@runtime_checkable
class ModelLoader(Protocol):
    """Turns a source (folder, hub id, file) into a model and its tokenizer/processor."""

    def can_load(self, source: str) -> bool:
        """Whether this loader understands ``source`` (cheap: no weights are read)."""

    def load(self, source: str, **options: Any) -> tuple[Any, Any]:
        """Return ``(model, tokenizer)``; options include ``torch_dtype``, ``device_map``."""

    def load_tokenizer(self, source: str, **options: Any) -> Any:
        """Return only the tokenizer (or processor) of ``source``."""


@runtime_checkable
class Template(Protocol):
    """Chat formatting for one tokenizer, with assistant-only labels for training.

    Built as ``cls(tokenizer, **options)``; options include ``system`` (override or add the
    system prompt), ``max_length``, ``truncation`` and ``loss_scope``.
    """

    def render(self, messages: Sequence[Message], *, add_generation_prompt: bool = False) -> str:
        """The prompt text for ``messages``."""

    def encode(self, messages: Sequence[Message]) -> dict[str, list[int]]:
        """``input_ids``, ``attention_mask`` and ``labels`` (-100 outside assistant turns)."""


@runtime_checkable
class DatasetSource(Protocol):
    """Reads a dataset spec (``NAME_OR_PATH[:subset][#N]``) into canonical rows."""

    def can_read(self, spec: str, *, hub: str | None = None) -> bool:
        """Whether this source reads ``spec`` (cheap: nothing is downloaded or parsed)."""

    def read(self, spec: str, *, streaming: bool = False, **options: Any) -> Iterable[dict]:
        """Canonical rows of ``spec`` (a list, or a lazy iterable when ``streaming``)."""


@runtime_checkable
class Tuner(Protocol):
    """Makes a model trainable by one method (LoRA, full, freeze, ...)."""

    def prepare(self, model: Any, config: Any) -> Any:
        """Return the model to train (wrapped or modified); only the method's params train."""

    def save(self, model: Any, output_dir: str) -> None:
        """Write what was trained to ``output_dir`` (safetensors)."""

    def load(self, model: Any, path: str) -> Any:
        """Apply a saved result from ``path`` to a base ``model`` and return it."""

    def merge(self, model: Any) -> Any:
        """Fold the trained weights into the base model (only when the record claims ``merge``)."""

    # Optional, used by the training loop where present: create_optimizer(model, config) ->
    # optimizer | None, regularization(model) -> loss term | None, on_step(model, step) after
    # each optimizer step (gradients still present), may_change(model) -> parameter names,
    # restore(model, path) -> model (load a save into a freshly prepared model, to resume).


@runtime_checkable
class Loss(Protocol):
    """A training objective over a model's outputs for one batch."""

    def __call__(self, model: Any, batch: Mapping[str, Any], **options: Any) -> Any:
        """The scalar loss (and metrics where the objective has them)."""


@runtime_checkable
class Quantizer(Protocol):
    """Quantizes a model at load time, at export time, or both."""

    def quantize_on_load(self, bits: int, **options: Any) -> Any:
        """The ``quantization_config`` passed to ``from_pretrained``."""

    def export(
        self, model: Any, tokenizer: Any, output_dir: str, bits: int, **options: Any
    ) -> None:
        """Write a quantized copy of ``model`` to ``output_dir``."""


@runtime_checkable
class InferenceEngine(Protocol):
    """Generates text for chat requests."""

    def generate(self, requests: Sequence[Sequence[Message]], **generation: Any) -> list[str]:
        """One answer per request (batched)."""

    def stream(self, messages: Sequence[Message], **generation: Any) -> Iterator[str]:
        """The answer to one request, piece by piece."""


@runtime_checkable
class ParallelStrategy(Protocol):
    """Spreads training over processes and devices."""

    def wrap(self, model: Any, optimizer: Any) -> tuple[Any, Any]:
        """The model and optimizer, wrapped for this strategy."""

    def save_checkpoint(self, model: Any, optimizer: Any, path: str) -> None:
        """Write a checkpoint (sharded strategies gather or shard here)."""


@runtime_checkable
class EvalTask(Protocol):
    """A benchmark: its examples and its scoring."""

    def examples(self, limit: int | None = None) -> Iterable[dict]:
        """The task's examples."""

    def score(self, predictions: Sequence[str], examples: Sequence[dict]) -> dict[str, float]:
        """Metric name -> value."""


@runtime_checkable
class Callback(Protocol):
    """Observes training: called with metrics as they are logged."""

    def on_log(self, step: int, metrics: Mapping[str, float]) -> None:
        """Metrics of ``step``."""

    def on_end(self) -> None:
        """Training finished (or stopped); flush and close."""
