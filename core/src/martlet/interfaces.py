"""What an implementation of each kind receives and returns.

A record's ``impl`` names, by import string, what ``record.load()`` returns: for most kinds a
class whose instances satisfy the protocol of the kind below. The protocols name no torch type
at import time (models, tensors and devices are ``Any`` here); the SDK's contract tests check
behaviour, not just shape. They grow as the capabilities land; a change that breaks an existing
implementation bumps :data:`martlet.PLUGIN_API`. Methods a protocol's docstring calls optional
are looked up with ``getattr`` and used where present.

What ``record.load()`` returns, per kind, and who calls it:

models
    a function ``resolve(record) -> str | None``, for the model records that name an ``impl``
    (most name only ``path`` or ``hub_ids``). :func:`martlet.api.resolve_model` calls it with
    the :class:`~martlet.records.ModelRecord` before anything else and loads the local file or
    folder it returns; on None it tries the record's ``path``, then its ``hub_ids``. The
    embedded default model uses it.
model_loaders
    a class; ``cls()`` is a :class:`ModelLoader`. :func:`martlet.load_model` (every command
    that loads a model) uses the loader named by ``loader=`` or by the model record's
    ``loader``; otherwise it asks ``can_load(source)`` of every loader whose ``requires`` are
    installed and uses the one that answers True (none, or more than one, is an error).
templates
    a class; ``cls(tokenizer, **options)`` is a :class:`Template`.
    :func:`martlet.load_template` builds it for the model's tokenizer (or processor) with the
    command's template options; with no name given it uses the template called ``auto``.
datasets
    a preprocessor or a row generator, for the dataset records that name an ``impl`` (most
    name only ``path`` or ``hub_ids``, and a ``format``). martlet-data's ``named`` dataset
    source calls it while reading. With ``path`` or ``hub_ids`` it is a preprocessor
    ``fn(row, *, model_name, model_author)`` that turns each raw row into a row (or a list of
    rows) before the format is converted: it raises ``martlet_data.errors.RowProblem`` for a
    row it cannot use, and a ``keep`` attribute lists extra columns the canonical rows keep.
    With neither, it is a generator ``fn(*, model_name, model_author)`` of the raw rows.
dataset_sources
    a class; ``cls()`` is a :class:`DatasetSource`. :func:`martlet.load_dataset` (and so every
    ``--dataset``) uses the source named by ``source=``; otherwise it asks ``can_read(spec)``
    of every source whose ``requires`` are installed and reads with the one that answers True
    (none, or more than one, is an error).
tuners
    a class; ``cls()`` is a :class:`Tuner`. ``martlet sft``, ``pt`` and ``rlhf`` (with
    ``--tuner NAME``) build one instance to ``check`` the config before anything loads, then
    another that runs ``prepare``, the optional training methods and ``save`` on one model.
    :func:`martlet.load_run` (``martlet infer`` and ``martlet export`` with ``--adapters``)
    builds a fresh one and calls ``load``; ``martlet export --merge-lora`` then calls
    ``merge``.
losses
    the loss callable itself, used as it is (not instantiated): a :class:`Loss`.
    ``martlet rlhf --method NAME`` loads it; ``martlet sft`` and ``pt`` call a ``"batch"``
    loss named by ``--loss`` (their own ``sft`` or ``pt`` by default). The training loop calls
    either through an :class:`Objective`.
parallel_strategies
    a class; ``cls(**options)`` is a :class:`ParallelStrategy`, ``options`` the values of the
    record's own options. ``martlet sft``, ``pt`` and ``rlhf`` with ``--parallel NAME`` (or
    more than one process: ``ddp``) build one in every process the run starts
    (``--nproc-per-node``, ``--nnodes``: the command starts them under torchrun itself).
quantizers
    a class; ``cls()`` is a :class:`Quantizer`. ``--quant-method NAME --quant-bits N`` on
    ``sft``, ``pt``, ``rlhf``, ``infer`` and ``deploy`` (:func:`martlet.load_model` with
    ``quant_method=``) calls ``quantize_on_load`` (and ``quantize_loaded`` where it has one);
    ``martlet export --quant-method NAME`` calls ``export``; a checkpoint quantized elsewhere
    goes to ``prepare_prequantized``. Each only where the record's ``stages`` holds ``"load"``,
    ``"export"`` or ``"prequantized"`` (:func:`martlet.quantize.chosen` checks, and the widths
    and CUDA the record declares, before anything loads). The record's options (``--quant-method
    NAME --help``) arrive as keyword arguments.
inference_backends
    a class; ``cls(model, tokenizer, template=template)`` is an :class:`InferenceEngine`.
    ``martlet infer --infer-backend NAME`` builds it for the loaded model (with a run's result
    applied, for ``--adapters``) and a :class:`Template` bound to its tokenizer that does not
    truncate.
accelerators
    a class; ``cls()`` is an :class:`Accelerator`. :func:`martlet.devices.place` uses the
    record named by ``--device`` (``NAME[:INDEX]``), else the first non-CPU one that
    ``is_available()``, else ``cpu``: training, ``infer`` and ``export`` run on it and
    :mod:`martlet.precision` reads its ``preferred_dtype()`` to resolve ``auto`` precision;
    ``martlet doctor`` reports every one's devices, dtypes and memory.
eval_tasks
    a class; ``cls(**options)`` is an :class:`EvalTask`, ``options`` the values of the
    record's own options (its ``options`` dataclass) and ``dataset`` (the record's, or the
    data a YAML task declares). ``martlet eval --tasks NAME`` builds one per task named, asks
    it for its documents and for each document's requests (:mod:`martlet.evaluation`), has
    the model answer them (log-likelihoods, generations) and gives the answers back to
    :meth:`EvalTask.process`.
callbacks
    a class; ``cls(output_dir=OUTPUT_DIR, **options)`` is a :class:`Callback`, ``options``
    the values of the record's own options (its ``options`` dataclass, set by the user with
    ``--report-to NAME``). ``martlet sft``, ``pt`` and ``rlhf`` build one per ``--report-to
    NAME`` on every process; accept and ignore other keywords, as the built-in callbacks do.
kernels
    a class; ``cls()`` is a :class:`Kernel`. ``martlet sft``, ``pt`` and ``rlhf`` enter
    ``applied(model, device=..., dtype=...)`` of each kernel ``--kernels`` chooses
    (:func:`martlet.kernels.chosen`: ``auto``, every installed kernel whose record fits the run's
    device and compute dtype; ``auto,-NAME``; ``none``; or names) on the prepared model (the
    tuner's adapters in place) for the whole run.
rewards
    a class; ``cls(max_completion_length=N, device=DEVICE, **options)`` is a :class:`Reward`,
    ``options`` the values of the record's own options (its ``options`` dataclass, set with
    ``--reward-funcs NAME --FLAG VALUE``); ``max_completion_length`` (the most tokens the run
    generates per completion, or None) and ``device`` (where the policy computes: ``"cpu"``,
    ``"cuda:0"``; or None) describe the run: accept and ignore keywords you do not use, as the
    built-in rewards do. The online RL trainer (``martlet rlhf --method grpo --reward-funcs
    NAME ...``) builds one per name (:func:`martlet.rewards.build`), checks before training
    that the dataset has the columns each reads (the record's ``columns``), and calls each on
    every batch of generated completions; the completion's reward is their weighted sum
    (``--reward-weights``), and each one's mean and spread are logged
    (:class:`martlet.rewards.Rewards`).
commands
    a ``click.Command`` (or group), not a class: ``martlet NAME ARGS`` (or an alias) runs it;
    :func:`martlet.cli.config_command` makes one from a config dataclass. A
    :class:`~martlet.errors.MartletError` it raises is printed as ``Error: ...`` without a
    traceback (unless ``--debug``) and gives the exit code; an int it returns is the exit code.
    It reaches other plugins' records through :mod:`martlet.registry`.

This file is the reference: ``docs/plugins.md`` renders the list above and every protocol's
docstrings from here (``python -m martlet_sdk.hookdoc docs/plugins.md``; a test keeps the two
in step).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager as ContextManager
from typing import Any, Protocol, runtime_checkable

Message = Mapping[str, Any]
"""One chat message: ``{"role": "user", "content": "..."}`` (OpenAI style)."""


@runtime_checkable
class Accelerator(Protocol):
    """A device kind (cpu, cuda, mps, xpu, npu, ...).

    ``device_type`` is the ``torch.device`` type the device computes as. ``martlet sft``,
    ``pt``, ``rlhf``, ``infer`` and ``export`` choose their device through these records
    (:func:`martlet.devices.place`: ``--device NAME[:INDEX]``, else the first available one
    other than the CPU, else the CPU): they ask ``is_available`` and ``device_count``, put the
    model on ``device_type`` (index ``INDEX``), resolve ``auto`` precision from
    ``preferred_dtype`` and seed with ``manual_seed``; ``martlet doctor`` reports
    ``supported_dtypes`` and ``memory_stats``. ``distributed_backend`` and ``synchronize`` are
    for the parallel strategies.

    Optional: ``prepare()``, called once when the device is chosen, before anything runs on it:
    an import that must happen first (``import torch_npu``) or a runtime to start.
    """

    device_type: str

    def is_available(self) -> bool:
        """Whether at least one device of this kind can be used now. Cheap; asked of every
        accelerator when ``--device`` is not given."""

    def device_count(self) -> int:
        """How many devices of this kind there are (0 when unavailable)."""

    def device(self, index: int = 0) -> Any:
        """The ``torch.device`` of device ``index``."""

    def supported_dtypes(self) -> list[str]:
        """Floating dtypes usable for training here, e.g. ``["float32", "bfloat16"]``."""

    def preferred_dtype(self) -> str:
        """The fastest dtype that trains reliably on this device: what ``auto`` precision
        resolves to (``"bfloat16"`` or ``"float16"`` there, ``"float32"`` for no half)."""

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
    """Turns a source (folder, hub id, file) into a model and its tokenizer/processor.

    ``source`` is what :func:`martlet.api.resolve_model` made of the user's ``--model``: a
    registered model's local path or hub id, or the user's text unchanged.
    """

    def can_load(self, source: str) -> bool:
        """Whether this loader understands ``source`` (cheap: no weights are read). Exactly one
        installed loader may answer True for a source."""

    def load(self, source: str, **options: Any) -> tuple[Any, Any]:
        """Return ``(model, tokenizer)``: a ``torch.nn.Module`` (in practice a Hugging Face
        model: the losses call ``model(input_ids=..., attention_mask=...).logits``, tuners and
        ``martlet export`` call ``save_pretrained``) and its tokenizer or processor.

        ``options`` are the command's model options, those set: ``torch_dtype`` (a dtype
        name, ``auto`` already resolved), ``trust_remote_code``, ``device_map``,
        ``attn_impl``, ``max_memory``, ``revision``, ``task_type`` (``"seq_cls"`` for a
        scalar-head reward model) and ``num_labels``, and ``quantization_config`` (from a
        quantizer's ``quantize_on_load``). When the user names your loader
        (``--model-loader NAME``), the options your record declares come too, by field name.
        Raise :class:`~martlet.errors.ConfigError` for one you do not know. The
        ``martlet_model_loaded`` hooks see the model afterwards.
        """

    def load_tokenizer(self, source: str, **options: Any) -> Any:
        """Return only the tokenizer (or processor) of ``source``; ``options`` as for
        :meth:`load`."""


@runtime_checkable
class Template(Protocol):
    """Chat formatting for one tokenizer, with assistant-only labels for training.

    Built as ``cls(tokenizer, **options)``. The commands pass ``system`` (replace the
    conversation's system prompt, or add one), ``max_length`` (None: no limit; inference
    passes None), ``truncation`` (``delete``, ``left`` or ``right``: what :meth:`encode` does
    with a longer conversation) and ``loss_scope`` (``all`` assistant turns labelled, or the
    ``last``), and, when the user names your template (``--template NAME``), the options your
    record declares, by field name. Raise :class:`~martlet.errors.ConfigError` for an option
    you do not know.
    """

    def render(self, messages: Sequence[Message], *, add_generation_prompt: bool = False) -> str:
        """The prompt text for ``messages``. Inference engines call it with
        ``add_generation_prompt=True`` and tokenize the text without adding special tokens."""

    def encode(self, messages: Sequence[Message]) -> dict[str, list[int]]:
        """``input_ids``, ``attention_mask`` and ``labels`` (-100 outside assistant turns).

        Called for every chat row a training command encodes (for both conversations of a
        preference row), and by ``martlet infer --task reward`` to score a conversation, with
        ``tools=`` when the row declares tools. The three lists have one length; a message
        with ``"loss": False`` is never labelled, one with ``"loss": True`` always is. It may
        add ``truncated``: how many tokens ``max_length`` cut. Return None to drop a
        conversation longer than ``max_length`` (the row is counted as deleted); raise
        :class:`~martlet.errors.MartletError` for one it cannot render (the run stops naming
        the row, or skips it with ``--on-bad-rows skip``).
        """


@runtime_checkable
class DatasetSource(Protocol):
    """Reads a dataset spec (``NAME_OR_PATH[:subset][#N]``) into canonical rows.

    Optional: ``refusal(spec) -> MartletError | None`` — when no source claims a spec, the
    first error a source's ``refusal`` returns is what the user sees (e.g. "``#N`` must be a
    positive integer" for ``sample-sft#0``) instead of "no dataset source can read it".
    """

    def can_read(self, spec: str, *, hub: str | None = None) -> bool:
        """Whether this source reads ``spec`` (cheap: nothing is downloaded or parsed). ``hub``
        is the hub the user chose (``"huggingface"``, ``"modelscope"``), when one was given.
        Exactly one installed source may answer True for a spec."""

    def read(self, spec: str, *, streaming: bool = False, **options: Any) -> Iterable[dict]:
        """Canonical rows of ``spec`` (a list, or a lazy iterable when ``streaming``).

        A canonical row is ``{"messages": [{"role": ..., "content": ...}, ...]}``, with
        ``rejected_response`` (or ``rejected_messages``) for a preference pair, ``label``
        (bool) for a KTO row and ``tools`` where the row declares tools; pre-training rows are
        ``{"text": ...}``. ``options`` are martlet-data's read options (``columns``,
        ``on_bad_rows``, ``format``, ``hub``, ``split``, ``seed``, ``model_name``,
        ``model_author``, ...), and, when the user names your source (``--dataset-source
        NAME``), the options your record declares, by field name; raise
        :class:`~martlet.errors.ConfigError` for one you do not know. A plain list (or, when
        streaming, any iterable) of canonical rows is enough.
        """


@runtime_checkable
class Tuner(Protocol):
    """Makes a model trainable by one method (LoRA, full, freeze, ...).

    ``config`` is the command's resolved config dataclass (``martlet sft``'s ``SftConfig``,
    ``rlhf``'s ``RlhfConfig``) with your record's own options (the dataclass its ``options``
    names) composed in: read them, and the command's options you need, as attributes. A user
    sets your options only with ``--tuner`` naming your record; they reach no other tuner.
    Optional methods, used where present:

    - ``check(config)``: before any model or data loads; raise
      :class:`~martlet.errors.ConfigError` for options you cannot use.
    - ``create_optimizer(model, config)``: the optimizer for the prepared model, or None for
      the loop's AdamW over the parameters that require grad.
    - ``regularization(model)``: a loss term added to each micro-batch's loss (divided by
      their number), or None.
    - ``on_step(model, step)``: after each optimizer step (``step`` counts from 1), before the
      gradients are cleared.
    - ``restore(model, path)``: load what :meth:`save` wrote to a checkpoint folder ``path``
      into ``model``, the freshly *prepared* model, in place, keeping it trainable, and
      return it; how ``--resume-from-checkpoint`` resumes (a tuner without it cannot resume).
    - ``may_change(model)``: the names of the parameters training may change, when that is
      not just those that require grad after :meth:`prepare` (the contract tests check it).

    During training ``model`` is the prepared model, unwrapped from any distributed wrapper.
    Claim ``"adapter"`` in the record when the base weights stay frozen, ``"merge"`` when
    :meth:`merge` works.
    """

    def prepare(self, model: Any, config: Any) -> Any:
        """Return the model to train (wrapped or modified); only the method's params train.

        ``model`` is the bare base model from the model loader (quantized with
        ``--quantization-bit``, with a scalar head for ``--task-type seq_cls``, gradient
        checkpointing enabled where asked). The parameters that require grad afterwards are what
        the optimizer trains.
        """

    def save(self, model: Any, output_dir: str) -> None:
        """Write what was trained to ``output_dir`` (safetensors).

        Called on the main process with the trained model, for the run directory at the end
        and for each checkpoint (a temporary folder, renamed when complete). The loop saves
        the tokenizer and its own state beside it; write only the trained result, loadable by
        :meth:`load` without Martlet's run files.
        """

    def load(self, model: Any, path: str) -> Any:
        """Apply a saved result from ``path`` to a base ``model`` and return it.

        ``model`` is a bare base model, freshly loaded and never prepared (with the run's
        ``task_type``); ``path`` is what :meth:`save` wrote: a run directory or one of its
        checkpoints. Return the model that computes what the trained one did (a PEFT model, say),
        ready for inference.
        """

    def merge(self, model: Any) -> Any:
        """Fold the trained weights into the base model (only when the record claims ``merge``).

        ``model`` is what :meth:`load` returned. Return a plain model of the base's
        architecture, with the same outputs, that ``save_pretrained`` writes as an ordinary
        model folder; raise :class:`~martlet.errors.MartletError` if this result cannot be
        merged.
        """


@runtime_checkable
class Loss(Protocol):
    """A training objective, called as the record's ``inputs`` says.

    Only ``"batch"`` losses have this protocol's shape (:meth:`__call__`). The others are pure
    functions of tensors that ``martlet rlhf`` computes from the model and the batch and passes
    positionally; they return an object (a dataclass, say) with the attributes named:

    - ``"logps"`` on ``data="preference"`` rows: ``loss(policy_chosen_logps,
      policy_rejected_logps, reference_chosen_logps, reference_rejected_logps, **options)``,
      the reference pair only where the record sets ``reference`` (zeros with
      ``--reference-free``). Each is a 1-D float tensor, one value per pair: the log-probs
      *summed* over the final assistant turn's tokens. Returns ``losses``, ``chosen_rewards``
      and ``rejected_rewards`` (1-D, one per pair; rewards detached) and, optionally,
      ``metrics`` (name -> float, a mean over the pairs, logged).
    - ``"logps"`` on ``data="kto"`` rows: ``loss(policy_logps, reference_logps, labels,
      policy_kl_logps, reference_kl_logps, **options)``, one value per row; ``labels`` is a
      bool tensor (True: desirable), the ``kl`` pair are the log-probs of mismatched
      prompt/completion pairs. Returns ``losses`` (per row, in input order),
      ``chosen_rewards`` and ``rejected_rewards`` (of the desirable and of the undesirable
      rows) and ``kl`` (a scalar tensor).
    - ``"rewards"``: ``loss(chosen_scores, rejected_scores, **options)``: 1-D scores of the
      model's scalar head (``martlet rlhf`` loads it with ``task_type="seq_cls"``), and
      ``margin`` (per pair) where the rows have one. Returns ``losses``, one per pair (and
      detached ``chosen_rewards``/``rejected_rewards``, which the contract checks).
    - ``"logits"``: ``loss(student_logits, teacher_logits, **options)``: ``[tokens, vocab]``
      float logits of the student (the policy) and of the teacher at the response's target
      positions only, already aligned; options ``beta`` (``--gkd-beta``), ``temperature`` and
      ``reduction="sum"``. Returns the loss summed over the tokens, a scalar tensor.
    - ``"rollouts"`` (online RL, ``data="prompts"``): the record's ``impl`` is a class,
      built once with the run's options by keyword (``algo = impl(**options)``; raise
      ``ValueError`` or a ``ConfigError`` for a bad value). It has ``group_size`` (``G``
      completions per prompt), ``iterations`` (optimisation passes per generation batch),
      ``generation`` (the sampling keywords of :class:`InferenceEngine`), and the booleans
      ``uses_reference``, ``uses_old_logps`` and ``uses_values``. For each micro-batch of
      prompts ``martlet rlhf`` samples ``G`` completions to each with the live policy
      (``N = B * G`` rows, a prompt's completions consecutive), scores them with the
      ``--reward-funcs`` (:class:`Reward`), computes without gradients the per-token
      log-probabilities the objective uses (``old_logps``, ``ref_logps``: ``[N, T]`` over the
      completion tokens, ``mask`` 1 on them) and calls ``algo.advantages(rewards, mask, *,
      old_logps, ref_logps, values)`` once (``rewards``: ``[N]``, NaN where no reward
      applied); the result has ``advantages`` (``[N]`` or ``[N, T]``), ``returns`` and
      ``metrics`` (name -> float). Then, with gradients, per micro-batch: ``algo.loss(logps,
      mask, advantages, *, old_logps, ref_logps, values, old_values, returns, entropies) ->
      (loss_sum, count, metrics)`` as for ``"batch"`` (metrics ``(sum, n)``), and
      ``algo.units(mask)`` is that ``count``. martlet-align's ``grpo``, ``rloo`` and
      ``reinforce_pp`` are such classes.

    Options go by keyword, only those the function's signature names (every one to ``**kwargs``) and
    never a None one, so the function's defaults apply. The ``"logps"`` and ``"rewards"`` losses get
    ``beta``, ``loss_type``, ``loss_weights``, ``label_smoothing``, ``rpo_alpha``, ``simpo_gamma``,
    ``cpo_alpha``, ``desirable_weight``, ``undesirable_weight`` and ``center_rewards_coefficient``
    (the ``martlet rlhf`` flags of those names), and ``chosen_lengths``/``rejected_lengths``
    (response token counts, preference rows only). A new loss declares its options by writing them.
    Before any model loads, ``martlet rlhf`` calls the function once on two made-up pairs with the
    run's options: raise ``ValueError`` for a bad value and the user gets it as a config error.
    """

    def __call__(self, model: Any, batch: Mapping[str, Any], **options: Any) -> Any:
        """``inputs="batch"``: ``(loss_sum, count, metrics)`` of the model on one batch.

        ``model`` is the model being trained, in train mode (eval mode, under ``no_grad``, for
        the evaluation loss). ``batch`` holds tensors on the device: ``input_ids``,
        ``labels`` (-100 where nothing is learned: the prompt, padding), and
        ``attention_mask`` and/or ``position_ids`` (restarting at 0 for each packed row); the
        logits at position ``t`` predict the label at ``t + 1``.

        Returns ``loss_sum``, a scalar tensor: the loss *summed* over the batch's units, never
        a mean (the loop divides by the units of the whole optimizer step, all micro-batches
        and processes); ``count``, the units (target tokens: ``labels[:, 1:] != -100``); and
        ``metrics``, name -> ``(sum, n)``, logged as ``sum / n``. An objective whose unit is
        not the target token has a ``count(batch) -> int`` method; one that changes a training
        batch before the step (on-policy generation) has ``prepare(model, batch) -> batch``.
        martlet-train's ``causal_lm_loss`` (``sft``, ``pt``) is one.
        """


@runtime_checkable
class Quantizer(Protocol):
    """Quantizes a model at load time, at export time, or both (the record's ``stages``).

    Two optional methods, called where the class has them: ``quantize_loaded(model, bits,
    **options) -> model`` after a load-time load (for a library that quantizes a loaded model
    rather than through ``from_pretrained``), and ``prepare_prequantized(model) -> model`` for a
    checkpoint another tool quantized (``stages`` holds ``"prequantized"``).
    """

    def quantize_on_load(self, bits: int, **options: Any) -> Any:
        """The ``quantization_config`` passed to ``from_pretrained``, or None (the model loads
        unquantized and ``quantize_loaded`` quantizes it).

        Called as ``quantize_on_load(bits, **options)`` with ``--quant-bits`` (one of the
        record's ``bits``) and the record's own options; the result goes to the model loader
        as the ``quantization_config`` option.
        """

    def export(
        self, model: Any, tokenizer: Any, output_dir: str, bits: int, **options: Any
    ) -> None:
        """Write a quantized copy of ``model`` to ``output_dir``.

        Called as ``export(model, tokenizer, output_dir, bits, **options)`` with
        ``--quant-bits`` and the record's own options: ``model`` is the ``--model``, or a run's
        model with its result applied (merged with ``--merge-lora``), loaded unquantized in
        ``--torch-dtype``. ``options`` also holds ``calibration``: a callable returning up to
        ``n`` rows of token ids (``calibration(n) -> list[list[int]]``) from ``--dataset``,
        encoded with the model's template, for methods that need calibration data. Write what
        a model loader can load: weights and tokenizer, or one file for a single-file format
        (``martlet export`` adds ``martlet_export.json``).
        """


@runtime_checkable
class InferenceEngine(Protocol):
    """Generates text for chat requests.

    ``generation`` holds ``max_new_tokens``, ``temperature`` (0: greedy), ``top_p``,
    ``top_k`` (0: off), ``repetition_penalty``, ``stop`` (strings that end an answer) and
    ``seed`` (or None).
    """

    def generate(self, requests: Sequence[Sequence[Message]], **generation: Any) -> list[str]:
        """One answer per request (batched).

        ``requests`` are conversations (lists of messages). Return the answers in request
        order, each with ``text`` and ``finish_reason`` (``"stop"`` or ``"length"``), which
        ``martlet infer`` reads (martlet-engine-pt returns ``Completion`` objects).
        """

    def stream(self, messages: Sequence[Message], **generation: Any) -> Iterator[str]:
        """The answer to one request, piece by piece: text pieces whose concatenation is the
        answer (``martlet infer --stream``)."""

    # Optional, for records that claim the ``token-ids`` capability:
    # ``generate_ids(prompts, **generation) -> list[list[int]]`` continues prompts given as
    # token ids and returns each one's new ids (ending after the first EOS, padding removed).
    # ``martlet rlhf --method gkd`` generates the student's answers this way, and online RL
    # its rollouts, through :func:`martlet.api.load_engine` with the live model being trained
    # (its current weights, adapter included). A record whose class is built as
    # ``cls(model, tokenizer, template=..., **options)`` around a model object in memory claims
    # the ``live-model`` capability (:data:`martlet.api.LIVE_MODEL`); ``load_engine`` picks
    # only such a record (a backend that loads its own copy from disk cannot see updates).


@runtime_checkable
class ServingEngine(Protocol):
    """Decodes many requests at once for a server (``martlet deploy``).

    A backend record that claims the ``serve`` capability has, on the class ``load()``
    returns, a classmethod ``serving(model, *, adapters=None, device=None, torch_dtype="auto",
    model_loader=None, loader_options=None, max_model_len=None, max_batch_size=None,
    max_queued_requests=None, **options)`` returning one: ``model`` is a model id or folder
    (a run's base model), ``adapters`` maps names to adapter folders served beside it,
    ``options`` the values of the record's own options. Requests arrive from any thread as
    prompt token ids and :class:`~martlet.generation.SamplingParams`; each is answered through
    its own :class:`~martlet.generation.Stream` of :class:`~martlet.generation.Step` objects,
    as the engine decodes it together with the others (continuous batching: a request joins
    between decoding steps). Text, stop strings and the wire format are the server's.
    """

    #: the tokenizer prompts are encoded with and answers decoded with
    tokenizer: Any
    #: the most tokens a request may hold, prompt and answer together
    max_model_len: int

    def adapters(self) -> list[str]:
        """The names of the adapters ``submit(adapter=...)`` accepts."""

    def submit(
        self,
        prompt_ids: Sequence[int],
        params: Any,
        *,
        adapter: str | None = None,
        request_id: str = "",
    ) -> Any:
        """Queue a request; returns its :class:`~martlet.generation.Stream` at once.

        ``params`` is a :class:`~martlet.generation.SamplingParams`; ``adapter`` one of
        :meth:`adapters` (None: the base model). The stream ends with a step whose
        ``finish_reason`` is ``stop`` (end-of-sequence or a stop token), ``length``
        (``max_tokens``, or the model's context) or ``abort`` (``Stream.cancel()``, shutdown).

        Raises:
            QueueFullError: too many requests are waiting (the server answers 429).
            BadRequestError: bad params, an unknown adapter, or a prompt too long for
                :attr:`max_model_len`.
            EngineStoppedError: :meth:`shutdown` was called (the server answers 503).
        """

    def shutdown(self, drain: bool = True) -> None:
        """Stop: with ``drain``, finish the requests already accepted first; else abort
        them. Accept no new request (``submit`` raises
        :class:`~martlet.generation.EngineStoppedError`)."""


@runtime_checkable
class ParallelStrategy(Protocol):
    """How a training run spreads over its processes (``--parallel NAME``; ``ddp`` by default
    when ``--nproc-per-node`` and ``--nnodes`` start more than one).

    Martlet's training loop drives 🤗 accelerate, which implements DDP, FSDP, DeepSpeed and
    Megatron-LM: a strategy says which, and how, as keyword arguments for
    ``accelerate.Accelerator`` (``fsdp_plugin=``, ``deepspeed_plugin=``, ``kwargs_handlers=``).
    The loop then wraps the model and optimizer (``accelerator.prepare``), keeps gradients in
    sync, and saves the trained result whole from the main process
    (``accelerator.get_state_dict``), so a sharded run exports like any other.

    Optional: ``check(config) -> None`` — refuse, before anything loads, what the strategy
    cannot train (a tuner, a device, a precision), with a :class:`~martlet.errors.MartletError`.

    A strategy that wraps the model itself (accelerate does FSDP and DeepSpeed only on GPUs;
    ``fsdp`` shards with PyTorch's ``fully_shard`` on every device, ``deepspeed`` drives
    DeepSpeed's engine on every device) has the loop call its optional hooks instead of
    accelerate's, each where present:

    - ``prepare(model, make_optimizer, *, accelerator) -> (model, optimizer)``: wrap the
      model in place of ``accelerator.prepare`` and build the optimizer over the parameters
      the wrapping made, with ``make_optimizer(model)`` (the tuner's ``create_optimizer`` or
      the loop's); the learning-rate schedule follows that optimizer. Such a run does not
      use the activation budget (``--max-activation-memory``).
    - ``no_sync(model)``: the context of a micro-batch that accumulates its gradients without
      synchronising them (its forward and backward pass both run inside it).
    - ``clip_grad_norm(model, max_norm) -> float``: clip the (sharded) gradients; the norm of
      the whole gradient, as one process would report it.
    - ``saving(model)``: the context every rank enters around the main process's writing of
      the trained result and checkpoints (a collective gathers the state): inside,
      ``model.state_dict()`` is the whole state on the main process, so the tuner's ``save``
      writes the files one process writes.
    - ``restoring(model)``: the context every rank enters to resume: inside,
      ``model.load_state_dict`` takes whole tensors (what a checkpoint holds).
    - ``optimizer_state_dict(model, optimizer) -> dict`` (every rank; a collective): the
      whole optimizer state in the layout of one process's ``optimizer.state_dict()`` (what
      the main process saves in a checkpoint), and ``load_optimizer_state_dict(model,
      optimizer, state)`` (every rank) to load it back, so a checkpoint resumes on any number
      of processes and strategies.
    - ``backward(model, loss)``: a micro-batch's backward pass in place of
      ``accelerator.backward(loss)`` (an engine that reduces and partitions the gradients
      itself: DeepSpeed's ``engine.backward``); ``loss`` is already divided for the step's
      accumulation and the number of processes.
    - ``step(model, optimizer, max_norm) -> float | None``: the optimizer step in place of
      the loop's clipping, ``optimizer.step()`` and ``optimizer.zero_grad()``: clip the
      gradients to ``max_norm`` (0: no clipping), step, zero them; the norm of the whole
      gradient before clipping, as one process would report it (None when not clipping).
      The learning-rate schedule then steps the optimizer ``prepare`` returned.
    """

    def accelerator_kwargs(self, *, world_size: int, device: str) -> dict[str, Any]:
        """Keyword arguments for ``accelerate.Accelerator`` on ``world_size`` processes whose
        device type is ``device`` (``"cpu"``, ``"cuda"``, ...)."""


@runtime_checkable
class EvalTask(Protocol):
    """A benchmark: its documents, the requests that score one, and that document's metrics.

    A document is a dict (a canonical row: ``question``, ``choices``, ``answer``,
    ``subject``, ``messages``, ...). ``martlet eval`` draws the few-shot examples of a
    document from :meth:`fewshot_docs` (optional; default: the other documents), passes them
    to :meth:`requests`, has the model answer each request — a
    :class:`~martlet.evaluation.Loglikelihood` is answered with a
    :class:`~martlet.evaluation.Scored` (the continuation's log-probability and whether it is
    the greedy continuation), a :class:`~martlet.evaluation.Generate` with the generated
    text — and gives the answers, in order, to :meth:`process`. A task's score is the mean
    of its documents' metrics; with a ``subject`` in the documents, each subject's mean too
    (the task's mean is weighted by the subjects' sizes).

    Optional methods, used where present:

    - ``fewshot_docs() -> list[dict]``: the pool few-shot examples come from (a dev split).
    - ``subject(doc) -> str | None``: the group a document's score is reported in (default:
      ``doc.get("subject")``).
    """

    def docs(self, limit: int | None = None) -> list[dict]:
        """The documents to score (the first ``limit`` when given)."""

    def requests(self, doc: dict, fewshot: Sequence[dict]) -> list[Any]:
        """What the model must answer for ``doc``: :class:`~martlet.evaluation.Loglikelihood`
        (one per choice of a multiple-choice question) or one
        :class:`~martlet.evaluation.Generate`, with ``fewshot`` documents as worked examples
        before the question (:func:`martlet.evaluation.turns`)."""

    def process(self, doc: dict, results: Sequence[Any]) -> dict[str, float]:
        """Metric name -> value for ``doc``, from the answers to its requests in order
        (``{"acc": 1.0, "acc_norm": 0.0}``, ``{"exact_match": 1.0}``)."""


@runtime_checkable
class Objective(Protocol):
    """What a training loop calls for a micro-batch's loss: a batch loss record's function
    bound to its options, or a training command's objective built around a loss record (a
    preference pair's log-probabilities, a reward model's scores, a teacher's logits).

    Optional methods, used where present:

    - ``count(batch) -> int``: the units the loss is summed over, when they are not the target
      tokens (preference pairs, KTO rows); the loop divides by the step's total.
    - ``prepare(model, batch) -> batch``: change a training batch before the step (on-policy
      generation: the student's own answers).
    """

    def __call__(self, model: Any, batch: Mapping[str, Any]) -> tuple[Any, Any, Mapping[str, Any]]:
        """``(loss_sum, count, metrics)``: the loss summed over the batch's units (never a
        mean), their count, and metrics as ``name -> (sum, n)`` (logged as sum / n)."""


@runtime_checkable
class Kernel(Protocol):
    """Switches some of a model's layers to a faster or leaner implementation for a run.

    The switched layers must compute what the model's own do (the same loss and gradients,
    within rounding: the contract and ``--kernels none`` tests compare them). A kernel that
    keeps less for the backward pass may declare a tensor it can recompute with
    :func:`martlet.memory.derived`. A computation that is not a layer — the output layer fused
    with the loss, attention segment by segment in packed rows — is offered by name while the
    kernel is applied (:func:`martlet.kernels.provide`, the names and contracts in
    :data:`martlet.kernels.OPS`, declared in the record's ``provides``); the plugin doing that
    computation asks for it (:func:`martlet.kernels.provided`) and uses its own code without it.
    """

    def applied(self, model: Any, *, device: str, dtype: str) -> ContextManager[int]:
        """A context manager: while active, the layers of ``model`` this kernel supports run
        through it; it yields how many layers it switched (0: none here) and gives them their
        own implementation back on exit. ``device`` is the device type the run computes on
        (``cpu``, ``cuda``), ``dtype`` its compute dtype (``bfloat16``, ``float32``, ...)."""


@runtime_checkable
class Reward(Protocol):
    """Scores a batch of generated completions, one score each (a reward function of online RL).

    Called with keywords only, as TRL's ``GRPOTrainer`` calls a reward function:
    ``reward(prompts=..., completions=..., completion_ids=..., **columns)``:

    - ``prompts``: what each completion answers. Martlet passes conversations: lists of
      messages (``{"role": "user", "content": "..."}``), the row's messages before its answer.
      (TRL passes conversations for chat data and texts for plain-text prompts.)
    - ``completions``: the generated answers. Martlet passes texts, decoded without special
      tokens. (TRL passes a list of one assistant message per completion for chat data.)
      :func:`martlet.rewards.text_of` and :func:`martlet.rewards.conversation_of` read either
      form: a reward that uses them runs under both trainers.
    - ``completion_ids``: each completion's token ids (what length penalties count).
    - the dataset's columns, each a list of one value per completion (a prompt's value repeated
      for each of its completions): every column the rows have, the record's ``columns``
      among them.
    - anything else (TRL's ``trainer_state``, ``log_metric``): accept and ignore the keywords
      you do not use (``**kwargs``).

    Optional attribute ``columns``: the dataset columns this instance reads, where its options
    change the record's ``columns`` (the same form: a name, or names joined by ``|``).
    """

    def __call__(
        self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any
    ) -> list[float | None]:
        """One score per completion, in order: a float, or None where the reward does not
        apply to that completion (its reference answer is missing or cannot be read). None is
        left out of the weighted sum, as TRL's ``nansum`` does; a completion no reward applies
        to gets no reward. The same input gives the same scores; an empty completion is
        scored (or None), never an error, and never NaN: a NaN, a non-number, the wrong number
        of scores or an exception stops training with an error naming the reward. Raise a
        :class:`~martlet.errors.MartletError` for what the user must fix (a server that cannot
        be reached, a column of the wrong kind).
        """


@runtime_checkable
class Callback(Protocol):
    """Observes training: called with metrics as they are logged."""

    def on_log(self, step: int, metrics: Mapping[str, float]) -> None:
        """Metrics of ``step``.

        Called on the main process every ``--logging-steps`` steps, at the last step and after each
        evaluation, with the line also written to ``metrics.jsonl``: ``step`` and either the
        training metrics (``loss``, ``learning_rate``, ``epoch``, ``grad_norm``,
        ``tokens_per_second``, ``padding_fraction``, ``num_tokens``, ``step_seconds`` and the
        objective's, such as ``rewards/accuracy``) or the evaluation ones (``eval_loss``,
        ``eval_<metric>``).
        """

    # Optional: ``on_step(step)``, called after every optimizer step (``step`` counts from 1)
    # on the main process (martlet-train's progress bar is such a callback).

    def on_end(self) -> None:
        """Training finished (or stopped); flush and close.

        Called once on every process, after the result is saved: at the end, after early
        stopping or an interruption (Ctrl-C, SIGTERM), not after an error.
        """
