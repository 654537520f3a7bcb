"""Records: what registration hooks yield.

A record is a frozen dataclass that *names* an implementation by an import string
(``"martlet_peft.lora:LoraTuner"``) and describes it well enough to list it, validate options
against it and explain what it needs — all without importing it. :meth:`Record.load` imports
the implementation on first use, after checking that the packages in ``requires`` are installed.

One record type per capability kind; :data:`KINDS` maps each kind to its record type and hook.
Every record is validated when it is built, so a plugin that yields a bad one is reported at
registration, against that plugin.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from martlet.errors import MissingDependencyError, PluginError, RecordError, UnknownNameError

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
IMPORT_RE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


def normalize(name: str) -> str:
    """The lookup key for a name: case-insensitive, ``_`` and ``-`` alike."""
    return name.strip().lower().replace("_", "-")


def _as_tuple(value: Any, field_name: str, record: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    try:
        items = tuple(value)
    except TypeError:
        raise RecordError(
            f"record {record!r}: field {field_name!r} must be a list of strings, got {value!r}"
        ) from None
    for item in items:
        if not isinstance(item, str):
            raise RecordError(
                f"record {record!r}: field {field_name!r} must hold strings, got {item!r}"
            )
    return items


@dataclass(frozen=True, kw_only=True)
class Record:
    """Fields every record has.

    Attributes:
        name: the name users type (``--tuner lora``); letters, digits, ``. _ + -``.
        impl: import string ``"package.module:attribute"`` of the implementation.
        summary: one line shown in listings and ``--help``.
        aliases: other names that resolve to this record.
        requires: pip requirement strings checked (from package metadata, without importing)
            before the implementation is imported.
        capabilities: what the implementation claims, e.g. ``{"train", "merge", "cpu"}``.
            Contract tests skip the checks of capabilities a record does not claim.
        options: optional import string of a dataclass describing the implementation's options.
        origin: set by the plugin manager: the plugin that registered the record.
    """

    kind: ClassVar[str] = ""
    label: ClassVar[str] = "record"
    impl_required: ClassVar[bool] = True

    name: str
    impl: str = ""
    summary: str = ""
    aliases: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()
    capabilities: frozenset[str] = frozenset()
    options: str = ""
    origin: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not NAME_RE.match(self.name):
            raise RecordError(
                f"invalid {self.label} name {self.name!r}",
                why="names start with a letter or digit and hold only letters, digits and . _ + -",
            )
        label = f"{self.kind}:{self.name}"
        for attr in ("aliases", "requires"):
            object.__setattr__(self, attr, _as_tuple(getattr(self, attr), attr, label))
        for alias in self.aliases:
            if not NAME_RE.match(alias):
                raise RecordError(f"record {label!r}: invalid alias {alias!r}")
        caps = self.capabilities
        if isinstance(caps, str):
            caps = (caps,)
        object.__setattr__(self, "capabilities", frozenset(_as_tuple(caps, "capabilities", label)))
        if not isinstance(self.summary, str):
            raise RecordError(f"record {label!r}: summary must be a string")
        if self.impl or self.impl_required:
            if not isinstance(self.impl, str) or not IMPORT_RE.match(self.impl):
                raise RecordError(
                    f"record {label!r}: impl {self.impl!r} is not an import string",
                    why="impl names the implementation as 'package.module:attribute'",
                    fix="e.g. impl='my_plugin.tuners:MyTuner'",
                )
        if self.options and not IMPORT_RE.match(self.options):
            raise RecordError(f"record {label!r}: options {self.options!r} is not an import string")
        for req in self.requires:
            _parse_requirement(req, label)

    @property
    def names(self) -> tuple[str, ...]:
        """The name followed by its aliases."""
        return (self.name, *self.aliases)

    def missing_requirements(self) -> list[str]:
        """Requirement strings of ``requires`` that installed package metadata does not meet."""
        return [req for req in self.requires if not _requirement_met(req)]

    def options_class(self) -> type | None:
        """The dataclass of :attr:`options` (imported now), or None when the record declares
        none. Its fields are the record's options (:func:`martlet.config.option`): a command
        that selects this record accepts them (:mod:`martlet.compose`). Only the options
        module is imported — keep it light (no torch).

        Raises:
            PluginError: the import string does not resolve to a dataclass.
        """
        if not self.options:
            return None
        obj = self._import(self.options, f"the options of {self.label} {self.name!r}")
        if not (isinstance(obj, type) and dataclasses.is_dataclass(obj)):
            raise PluginError(
                f"the options of {self.label} {self.name!r} are not a dataclass",
                why=f"{self.options} is {obj!r}",
                fix="point `options` at a @dataclass whose fields are martlet.config.option()s",
            )
        return obj

    def load(self) -> Any:
        """Import and return the implementation.

        Raises:
            MissingDependencyError: a package in ``requires`` is missing or too old.
            PluginError: the import string does not resolve.
        """
        if not self.impl:
            raise PluginError(f"{self.label} {self.name!r} names no implementation")
        missing = self.missing_requirements()
        if missing:
            quoted = " ".join(f"'{req}'" for req in missing)
            raise MissingDependencyError(
                f"{self.label} {self.name!r} needs {', '.join(missing)}, which is not installed",
                why=f"the plugin {self.origin or '?'} declares it in the record's `requires`",
                fix=f"pip install {quoted}",
            )
        return self._import(self.impl, f"{self.label} {self.name!r}")

    def _import(self, import_string: str, what: str) -> Any:
        """The object ``import_string`` names; a failure is a :class:`PluginError` saying
        ``cannot load WHAT from IMPORT_STRING`` (a :class:`MissingDependencyError` raised by
        the import passes through)."""
        try:
            return _resolve(import_string)
        except MissingDependencyError:
            raise
        except Exception as exc:  # noqa: BLE001 - reported with its cause
            raise PluginError(
                f"cannot load {what} from {import_string!r}",
                why=f"{type(exc).__name__}: {exc}",
                fix=f"check the installation of the plugin {self.origin or '?'}",
                cause=exc,
            ) from exc

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view of the record."""
        out: dict[str, Any] = {"kind": self.kind}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, frozenset):
                value = sorted(value)
            elif isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, Mapping):
                value = dict(value)
            out[f.name] = value
        return out


def _resolve(import_string: str) -> Any:
    """The object ``"package.module:attribute.path"`` names (the module imported now)."""
    module_name, _, attr_path = import_string.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr_path.split("."):
        obj = getattr(obj, part)
    return obj


def _parse_requirement(req: str, label: str):
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        return Requirement(req)
    except InvalidRequirement as exc:
        raise RecordError(f"record {label!r}: bad requirement {req!r}", why=str(exc)) from None


def _requirement_met(req: str) -> bool:
    from importlib import metadata

    parsed = _parse_requirement(req, "?")
    if parsed.marker is not None and not parsed.marker.evaluate():
        return True
    try:
        version = metadata.version(parsed.name)
    except metadata.PackageNotFoundError:
        return False
    return not parsed.specifier or parsed.specifier.contains(version, prereleases=True)


def _frozen_mapping(record: Record, attr: str) -> None:
    value = getattr(record, attr)
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise RecordError(f"record {record.kind}:{record.name!r}: {attr} must be a mapping")
    object.__setattr__(record, attr, dict(value))


@dataclass(frozen=True, kw_only=True)
class ModelRecord(Record):
    """A model id users can name (``--model qwen2.5-7b-instruct``).

    Where the weights are, in the order :func:`martlet.api.resolve_model` tries: ``impl`` (an
    optional callable ``resolve(record) -> str | None`` returning a local file or folder, or
    None when it has none — the embedded default model uses it), ``path`` (a local file or
    folder), then ``hub_ids`` (hub name -> id on that hub). ``loader`` names the model loader
    to use; empty means the one loader that says it can load the source.
    """

    kind: ClassVar[str] = "models"
    label: ClassVar[str] = "model"
    impl_required: ClassVar[bool] = False

    family: str = ""
    hub_ids: Mapping[str, str] = field(default_factory=dict)
    template: str = ""
    modality: str = "text"
    size: str = ""
    loader: str = ""
    path: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        _frozen_mapping(self, "hub_ids")
        if not self.family:
            raise RecordError(f"model record {self.name!r} has no family")

    def __hash__(self) -> int:
        return hash((self.kind, self.name))


@dataclass(frozen=True, kw_only=True)
class ModelLoaderRecord(Record):
    """How a source (a Hugging Face folder, a hub id, a GGUF file, ...) becomes a model.

    ``sources`` names what the loader accepts, e.g. ``("hf-dir", "hub")`` or ``("gguf",)``.
    """

    kind: ClassVar[str] = "model_loaders"
    label: ClassVar[str] = "model loader"
    sources: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "sources", _as_tuple(self.sources, "sources", self.name))


@dataclass(frozen=True, kw_only=True)
class TemplateRecord(Record):
    """A chat template: renders messages and masks assistant tokens for training."""

    kind: ClassVar[str] = "templates"
    label: ClassVar[str] = "template"
    families: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "families", _as_tuple(self.families, "families", self.name))


@dataclass(frozen=True, kw_only=True)
class DatasetRecord(Record):
    """A named dataset: where it comes from, its format and splits.

    ``impl`` is optional: a preprocessing callable applied to raw rows.
    ``hub_ids`` maps a hub (``"huggingface"``, ``"modelscope"``) to its id there;
    ``path`` names a file shipped inside a package (``"package:relative/path.jsonl"``).
    """

    kind: ClassVar[str] = "datasets"
    label: ClassVar[str] = "dataset"
    impl_required: ClassVar[bool] = False

    hub_ids: Mapping[str, str] = field(default_factory=dict)
    path: str = ""
    format: str = ""
    subsets: tuple[str, ...] = ()
    splits: tuple[str, ...] = ("train",)
    tags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        _frozen_mapping(self, "hub_ids")
        for attr in ("subsets", "splits", "tags"):
            object.__setattr__(self, attr, _as_tuple(getattr(self, attr), attr, self.name))
        if not self.hub_ids and not self.path and not self.impl:
            raise RecordError(
                f"dataset record {self.name!r} says nowhere to find its data",
                fix="set hub_ids, path or impl",
            )

    def __hash__(self) -> int:
        return hash((self.kind, self.name))


@dataclass(frozen=True, kw_only=True)
class DatasetSourceRecord(Record):
    """A reader of rows: local files by suffix, hub ids by scheme, streaming readers.

    ``suffixes`` (``(".jsonl", ".json")``) and ``schemes`` (``("hf",)``) say what it reads.
    """

    kind: ClassVar[str] = "dataset_sources"
    label: ClassVar[str] = "dataset source"
    suffixes: tuple[str, ...] = ()
    schemes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        for attr in ("suffixes", "schemes"):
            object.__setattr__(self, attr, _as_tuple(getattr(self, attr), attr, self.name))


@dataclass(frozen=True, kw_only=True)
class TunerRecord(Record):
    """A training method for the model's weights: LoRA and its kin, full, freeze, ...

    Claim ``"merge"`` in ``capabilities`` when the trained result can be merged into the base,
    and ``"adapter"`` when the base model's weights stay frozen (only added parameters train):
    ``--torch-dtype auto`` then loads the base in the device's native half dtype, where
    otherwise weights that train stay float32.

    ``saves`` names the files ``save`` writes into a run directory (``"adapter_config.json"``,
    ``"model.safetensors"``, ...): before a run or checkpoint is loaded each must be there and
    whole (:func:`martlet.rundirs.check_folder`; ``model.safetensors`` is also satisfied by
    sharded weights, an adapter's weights by either of PEFT's file names).
    """

    kind: ClassVar[str] = "tuners"
    label: ClassVar[str] = "tuner"
    saves: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "saves", _as_tuple(self.saves, "saves", self.name))


@dataclass(frozen=True, kw_only=True)
class LossRecord(Record):
    """A training objective.

    ``data`` is the row shape it trains on: ``"messages"``, ``"text"``, ``"preference"``,
    ``"kto"``, ``"prompts"`` (a prompt, optionally answer columns for reward functions);
    ``reference`` says whether it needs a reference model (for ``"rollouts"``: whether it can,
    the built object's ``uses_reference`` says whether this run does). ``inputs`` says what
    the implementation is called with:

    - ``"batch"``: ``impl(model, batch) -> (loss_sum, count, metrics)`` (SFT, pre-training);
    - ``"logps"``: per-sequence log-probabilities of the policy (and of the reference where
      ``reference``) -> an output with ``losses``, ``chosen_rewards``, ``rejected_rewards``;
    - ``"rewards"``: scalar scores of a reward head for chosen and rejected sequences;
    - ``"logits"``: student and teacher logits (distillation);
    - ``"rollouts"``: online RL on completions the policy samples (GRPO, RLOO, REINFORCE++,
      PPO). ``impl`` is a class: ``algo = impl(**options)`` (its options as keywords; a bad
      value raises ``ConfigError``) has ``group_size`` (completions per prompt, consecutive
      in every batch), ``iterations`` (optimisation passes per generation batch),
      ``generation`` (``generate()`` keywords), and ``uses_reference``, ``uses_old_logps``,
      ``uses_values`` (what the rollout must compute: the reference's per-token log-probs, the
      sampling policy's, a value head's). Per generation batch, without gradients:
      ``algo.advantages(rewards, mask, *, old_logps=None, ref_logps=None, values=None)`` ->
      an object with ``advantages`` (``[N]`` or ``[N, T]``), ``returns`` (value targets or
      None) and ``metrics`` (name -> float). Per micro-batch, with gradients:
      ``algo.loss(logps, mask, advantages, *, old_logps=None, ref_logps=None, values=None,
      old_values=None, returns=None, entropies=None) -> (loss_sum, count, metrics)``, the
      loop's triple, ``count == algo.units(mask)``. ``rewards`` ``[N]``; per-token tensors
      ``[N, T]`` over completion tokens with ``mask`` 1 on them; ``old_logps`` None means the
      policy's own, detached (ratio 1).
    """

    kind: ClassVar[str] = "losses"
    label: ClassVar[str] = "loss"
    INPUTS: ClassVar[tuple[str, ...]] = ("batch", "logps", "rewards", "logits", "rollouts")
    data: str = "messages"
    reference: bool = False
    inputs: str = "batch"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.inputs not in self.INPUTS:
            raise RecordError(
                f"loss record {self.name!r}: inputs must be one of {', '.join(self.INPUTS)}, "
                f"got {self.inputs!r}"
            )


@dataclass(frozen=True, kw_only=True)
class ParallelRecord(Record):
    """A parallel strategy: single device, DDP, FSDP, DeepSpeed, Megatron-style TP/PP."""

    kind: ClassVar[str] = "parallel_strategies"
    label: ClassVar[str] = "parallel strategy"
    multi_process: bool = False


@dataclass(frozen=True, kw_only=True)
class QuantizerRecord(Record):
    """A quantization method.

    ``stages`` says when it works: ``"load"`` (a model is quantized as it loads: ``--quant-method``
    on ``sft``, ``pt``, ``rlhf``, ``infer``, ``deploy``; QLoRA), ``"export"`` (``martlet export
    --quant-method``, with calibration data where the method needs it) and/or ``"prequantized"``
    (it loads checkpoints another tool quantized: a checkpoint whose ``quantization_config``
    names ``quant_method`` equal to the record's name or one of its aliases goes to it).
    ``bits`` are the widths it supports (empty: any, the record checks); ``needs_cuda`` that it
    cannot run without a CUDA GPU (refused before anything loads); ``engines`` the serving
    engines that load what its export writes as it is (``vllm``, ``sglang``, ``lmdeploy``:
    ``martlet export --output-type NAME`` checks it).
    """

    kind: ClassVar[str] = "quantizers"
    label: ClassVar[str] = "quantizer"
    bits: tuple[int, ...] = ()
    stages: tuple[str, ...] = ("load",)
    needs_cuda: bool = False
    engines: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "stages", _as_tuple(self.stages, "stages", self.name))
        object.__setattr__(self, "engines", _as_tuple(self.engines, "engines", self.name))
        bits = tuple(self.bits) if not isinstance(self.bits, int) else (self.bits,)
        if not all(isinstance(b, int) and b > 0 for b in bits):
            raise RecordError(f"quantizer record {self.name!r}: bits must be positive integers")
        object.__setattr__(self, "bits", bits)
        bad = set(self.stages) - {"load", "export", "prequantized"}
        if bad or not self.stages:
            raise RecordError(
                f"quantizer record {self.name!r}: unknown stages {sorted(bad) or 'none'}",
                why="a quantizer works at 'load' time, at 'export' time, on 'prequantized' "
                "checkpoints, or several of these",
            )


@dataclass(frozen=True, kw_only=True)
class BackendRecord(Record):
    """An inference engine (PyTorch, vLLM, SGLang, LMDeploy, ...)."""

    kind: ClassVar[str] = "inference_backends"
    label: ClassVar[str] = "inference backend"


@dataclass(frozen=True, kw_only=True)
class AcceleratorRecord(Record):
    """A device kind; ``device_type`` is the ``torch.device`` type (``"cpu"``, ``"cuda"``)."""

    kind: ClassVar[str] = "accelerators"
    label: ClassVar[str] = "accelerator"
    device_type: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.device_type:
            object.__setattr__(self, "device_type", self.name)


@dataclass(frozen=True, kw_only=True)
class EvalTaskRecord(Record):
    """A benchmark and how it is scored."""

    kind: ClassVar[str] = "eval_tasks"
    label: ClassVar[str] = "eval task"
    metric: str = ""
    dataset: str = ""
    #: how it is scored: ``multiple_choice`` (log-likelihood of each choice) or ``generate``
    #: (a generated answer checked against the reference)
    output_type: str = "multiple_choice"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.output_type not in ("multiple_choice", "generate"):
            raise RecordError(
                f"eval task record {self.name!r}: output_type {self.output_type!r} is unknown",
                why="a task is scored by log-likelihoods (multiple_choice) or by generating "
                "(generate)",
            )


@dataclass(frozen=True, kw_only=True)
class CallbackRecord(Record):
    """A logger or training-loop observer (``--report-to NAME``)."""

    kind: ClassVar[str] = "callbacks"
    label: ClassVar[str] = "callback"


@dataclass(frozen=True, kw_only=True)
class KernelRecord(Record):
    """Faster (or leaner) layers switched into a model for a run: a compiled RMSNorm, a fused
    MLP, Liger's GPU kernels (``--kernels auto|none|NAME,...``).

    ``devices`` (``("cpu",)``, ``("cuda",)``; empty: any) and ``dtypes`` (the compute dtypes,
    ``("bfloat16",)``; empty: any) say where it applies; ``replaces`` says what, in words
    (``"Llama-style RMSNorm"``), for ``martlet plugins``; ``provides`` names the operations
    of :data:`martlet.kernels.OPS` it may offer (:func:`martlet.kernels.provide`); ``uses``
    says what it is for: ``train`` (a training run switches it in) and/or ``infer`` (an
    inference engine does, for the model it serves; no gradients).
    """

    kind: ClassVar[str] = "kernels"
    label: ClassVar[str] = "kernel"
    devices: tuple[str, ...] = ()
    dtypes: tuple[str, ...] = ()
    replaces: str = ""
    provides: tuple[str, ...] = ()
    uses: tuple[str, ...] = ("train",)

    def __post_init__(self) -> None:
        super().__post_init__()
        for attr in ("devices", "dtypes", "provides", "uses"):
            object.__setattr__(self, attr, _as_tuple(getattr(self, attr), attr, self.name))
        unknown = set(self.uses) - {"train", "infer"}
        if unknown or not self.uses:
            raise RecordError(
                f"kernel record {self.name!r}: uses must name train and/or infer, "
                f"not {sorted(unknown) or 'nothing'}"
            )

    def fits(self, device: str, dtype: str, use: str = "train") -> bool:
        """Whether it applies to a run on ``device`` (a device type) computing in ``dtype``,
        for ``use`` (``train`` or ``infer``)."""
        return (
            use in self.uses
            and (not self.devices or device in self.devices)
            and (not self.dtypes or dtype in self.dtypes)
        )


@dataclass(frozen=True, kw_only=True)
class RewardRecord(Record):
    """A reward function of online RL: scores generated completions (``--reward-funcs NAME``;
    :mod:`martlet.rewards` builds and combines them).

    ``columns`` names the dataset columns it reads, given to it by name, one value per
    completion (``("solution",)``); an item ``"a|b"`` takes whichever of them the dataset has,
    the first present. A run whose dataset lacks one fails before training
    (:meth:`martlet.rewards.Rewards.check_columns`); the built implementation may narrow them to
    what its options chose (a ``columns`` attribute of the same form).
    """

    kind: ClassVar[str] = "rewards"
    label: ClassVar[str] = "reward"
    columns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "columns", _as_tuple(self.columns, "columns", self.name))
        for item in self.columns:
            names = item.split("|")
            if not all(n.strip() and n == n.strip() for n in names):
                raise RecordError(
                    f"reward record {self.name!r}: bad column {item!r}",
                    why="a column is a name, or names joined by | (whichever the dataset has)",
                    fix='e.g. columns=("solution",) or columns=("solution|answer",)',
                )


@dataclass(frozen=True, kw_only=True)
class CommandRecord(Record):
    """A CLI subcommand; ``impl`` names a ``click.Command`` (or group).

    The ``summary`` is what ``martlet --help`` shows, so it is listed without importing ``impl``.
    """

    kind: ClassVar[str] = "commands"
    label: ClassVar[str] = "command"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.summary:
            raise RecordError(f"command record {self.name!r} needs a summary for `martlet --help`")


RECORD_TYPES: tuple[type[Record], ...] = (
    ModelRecord,
    ModelLoaderRecord,
    TemplateRecord,
    DatasetRecord,
    DatasetSourceRecord,
    TunerRecord,
    LossRecord,
    ParallelRecord,
    QuantizerRecord,
    BackendRecord,
    AcceleratorRecord,
    EvalTaskRecord,
    CallbackRecord,
    KernelRecord,
    RewardRecord,
    CommandRecord,
)

#: kind name -> record type; the registration hook of a kind is ``martlet_<kind>``.
KINDS: dict[str, type[Record]] = {cls.kind: cls for cls in RECORD_TYPES}


def hook_name(kind: str) -> str:
    """The registration hook that yields records of ``kind``."""
    return f"martlet_{kind}"


_BY_LABEL = {cls.label.replace(" ", "_"): cls for cls in RECORD_TYPES}


def check_kind(kind: str) -> type[Record]:
    """The record type of ``kind`` (plural ``tuners`` or singular ``tuner``).

    Raises:
        UnknownNameError: ``kind`` is no kind; the message lists the valid ones.
    """
    key = kind.strip().lower().replace("-", "_").replace(" ", "_")
    cls = KINDS.get(key) or _BY_LABEL.get(key)
    if cls is None:
        close = difflib.get_close_matches(kind, KINDS, n=3)
        raise UnknownNameError(
            f"unknown kind {kind!r}",
            why=f"did you mean {', '.join(close)}?" if close else None,
            fix=f"use one of: {', '.join(KINDS)}",
        )
    return cls
