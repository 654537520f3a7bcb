"""The option groups of the core's contracts: what every command that loads a model, formats
chats or reads datasets passes to the records doing it, whichever plugins provide them.

- :class:`ModelOptions`: a model loader's options (:meth:`ModelOptions.loader_options`, what
  :class:`martlet.interfaces.ModelLoader` ``load`` receives), with the ``--model-loader``
  selector.
- :class:`TemplateOptions`: a chat template's (:class:`martlet.interfaces.Template`), with the
  ``--template`` selector.
- :class:`QuantizeOptions`: quantizing the model as it loads (``--quant-method``, a selector of
  quantizer records, and ``--quant-bits``), for every command that loads a model to train or
  serve it (:meth:`QuantizeOptions.quant_options`, what :func:`martlet.load_model` takes).
- :class:`DatasetReadOptions`: a dataset source's (:class:`martlet.interfaces.DatasetSource`
  ``read``), with the ``--dataset-source`` selector.

A command's config dataclass inherits the groups it needs (``class InferConfig(ModelOptions,
TemplateOptions)``), so ``--model``, ``--torch-dtype``, ``--template``, ``--max-length``,
``--dataset``, ... mean the same in every command, whichever plugin defines the command, with
ms-swift's names accepted as aliases. All are keyword-only dataclasses, so they combine with any
other fields in any order. No heavy import here.

    model, tokenizer = martlet.load_model(config.model, **config.loader_options())
    template = martlet.load_template(tokenizer, config.template, **config.template_options())
    rows = martlet.load_dataset(spec, **config.read_options())
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from martlet.config import apply_implied, option
from martlet.errors import ConfigError
from martlet.tasks import check_task_type

#: the quantizer ``--quant-bits`` alone names (bitsandbytes, as in ms-swift and LLaMA-Factory)
DEFAULT_QUANTIZER = "bnb"

#: the seed of ``#N`` sampling, shuffling and validation splits unless one is given
DEFAULT_SEED = 42


def check_num_labels(value: Any, task_type: str) -> int:
    try:
        number = int(str(value).strip()) if not isinstance(value, bool) else 0
    except ValueError:
        number = 0
    if number < 1:
        raise ConfigError(
            f"num_labels must be a positive whole number, got {value!r}",
            fix="e.g. --num-labels 1 for a reward model",
        )
    value = number
    if value != 1 and task_type != "seq_cls":
        raise ConfigError(
            f"num_labels {value} needs task_type seq_cls",
            why="a causal language model has no classification head",
            fix="add --task-type seq_cls, or leave --num-labels out",
        )
    return value


def check_columns(columns: Any, where: str = "--columns") -> dict[str, str] | None:
    """A column mapping ``{"their_name": "our_name"}`` (or None).

    Raises:
        ConfigError: not a mapping of names to names.
    """
    if columns is None or columns == {}:
        return None
    if isinstance(columns, str):
        import json

        try:
            columns = json.loads(columns)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"{where} expects a JSON object, got {columns!r}",
                why=str(exc),
                fix='e.g. --columns \'{"question": "query", "answer": "response"}\'',
            ) from None
    if not isinstance(columns, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) and k and v for k, v in columns.items()
    ):
        raise ConfigError(
            f"{where} must map column names to column names, got {columns!r}",
            fix='e.g. --columns \'{"question": "query", "answer": "response"}\'',
        )
    return dict(columns)


def check_names(value: Any, flag: str) -> tuple[str, ...]:
    if value is None:
        return ()
    items = (value,) if isinstance(value, str) else tuple(value)
    if not all(isinstance(v, str) and v.strip() for v in items) or len(items) > 2:
        raise ConfigError(
            f"{flag} takes one or two names (English, then Chinese), got {value!r}",
            fix=f"e.g. {flag} Aria 阿莉亚",
        )
    return tuple(v.strip() for v in items)


@dataclass(kw_only=True)
class ModelOptions:
    """Which model to load, and how."""

    model: str = option(
        help="Model: a registered id (`martlet model list`), a local folder or .gguf file, or a "
        "hub id already downloaded.",
        aliases=("model_type", "model_id_or_path"),
        metavar="ID_OR_PATH",
    )
    model_loader: str = option(
        "auto",
        help="The model loader: auto (the installed loader that can read --model) or one by "
        "name, with its own options.",
        aliases=("loader",),
        names_of="model_loaders",
    )
    torch_dtype: Literal["auto", "bfloat16", "float16", "float32"] = option(
        "auto",
        help="Dtype of the weights; auto: the device's native half dtype (bf16 or fp16) for "
        "weights that stay frozen (an adapter's base model, inference), float32 for weights "
        "that train and on devices without one.",
    )
    device_map: str | None = option(
        None,
        help="Where to place the layers: auto, cpu, cuda:0, ... or a JSON mapping "
        "(default: everything on one device).",
    )
    attn_impl: str | None = option(
        None,
        help="Attention implementation: eager, sdpa, flash_attn, flash_attention_3, "
        "flex_attention (default: transformers' choice).",
        aliases=("attn_implementation",),
    )
    max_memory: dict[str, str] | None = option(
        None,
        help='Most memory per device with device_map, as JSON: \'{"0": "20GiB", "cpu": "64GiB"}\'.',
    )
    trust_remote_code: bool = option(
        False, help="Run Python code shipped with the model (only for models you trust)."
    )
    model_revision: str | None = option(
        None, help="Branch, tag or commit of a hub model.", aliases=("revision",)
    )
    # the same option as martlet-peft's TunerOptions.task_type: one flag sets both
    task_type: Literal["causal_lm", "seq_cls", "reward"] = option(
        "causal_lm",
        help="The model's head: causal_lm (a language model) or seq_cls (a scalar or "
        "--num-labels classification head, e.g. a reward model; reward is another name).",
    )
    num_labels: int = option(
        1, help="Outputs of the seq_cls head (1 for a reward model).", metavar="N"
    )

    def __post_init__(self) -> None:
        if not str(self.model).strip():
            raise ConfigError("--model is empty", fix="name a model id, a folder or a .gguf file")
        self.task_type = check_task_type(self.task_type)  # type: ignore[assignment]
        self.num_labels = check_num_labels(self.num_labels, self.task_type)
        parent = getattr(super(), "__post_init__", None)
        if parent is not None:
            parent()

    def loader_options(self) -> dict[str, Any]:
        """The options for ``martlet.load_model(self.model, **options)``: the loader named by
        ``--model-loader`` (none: the one that can read the model) and its own options."""
        from martlet.compose import chosen_options

        out: dict[str, Any] = {
            "torch_dtype": self.torch_dtype,
            "trust_remote_code": self.trust_remote_code,
        }
        if self.model_loader and self.model_loader != "auto":
            out["loader"] = self.model_loader
            out.update(chosen_options(self, "model_loader"))
        for name, value in (
            ("device_map", self.device_map),
            ("attn_impl", self.attn_impl),
            ("max_memory", self.max_memory),
            ("revision", self.model_revision),
        ):
            if value is not None:
                out[name] = value
        if self.task_type != "causal_lm":
            out["task_type"] = self.task_type
        if self.num_labels != 1:
            out["num_labels"] = self.num_labels
        return out


@dataclass(kw_only=True)
class QuantizeOptions:
    """Quantize the model as it loads (QLoRA when a command trains an adapter on it)."""

    quant_method: str | None = option(
        None,
        help="Quantize the model as it loads with this quantizer (bnb, hqq, quanto, eetq, ...: "
        "`martlet plugins --kind quantizers`), with its own options; with a tuner, QLoRA.",
        aliases=("quant_method_load",),
        names_of="quantizers",
        implied_by={"quant_bits": DEFAULT_QUANTIZER},  # ms-swift's `--quantization_bit 4` alone
        metavar="NAME",
    )
    quant_bits: int | None = option(
        None,
        help="Bits per weight for --quant-method (default: the quantizer's only width).",
        aliases=("quantization_bit",),
        metavar="N",
    )
    quant_report: bool = option(
        True,
        help="With --quant-method on a command that writes a folder: measure the held-out "
        "perplexity next to the unquantized model's and the weights' memory, print them and "
        "write quantization.json.",
    )

    def __post_init__(self) -> None:
        apply_implied(self)  # ms-swift's `--quantization_bit 4` alone: bnb
        parent = getattr(super(), "__post_init__", None)
        if parent is not None:
            parent()

    def quant_options(self) -> dict[str, Any]:
        """What :func:`martlet.load_model` takes to quantize as it loads: ``quant_method``,
        ``quant_bits`` and the selected quantizer's own options as ``quant_options`` (empty
        without ``--quant-method``)."""
        from martlet.compose import chosen_options

        if not self.quant_method:
            return {}
        return {
            "quant_method": self.quant_method,
            "quant_bits": self.quant_bits,
            "quant_options": chosen_options(self, "quant_method"),
        }


@dataclass(kw_only=True)
class TemplateOptions:
    """How conversations become tokens."""

    template: str | None = option(
        None,
        help="Chat template: auto (the tokenizer's own) or a registered one; default auto, "
        "falling back on the model family's template.",
        aliases=("template_type",),
        names_of="templates",
    )
    system: str | None = option(
        None, help="System prompt: replaces the data's own, or is added where there is none."
    )
    max_length: int | None = option(None, help="Most tokens per encoded row (default: no limit).")
    truncation_strategy: Literal["delete", "left", "right"] = option(
        "delete",
        help="Rows longer than --max-length: delete drops them, left/right cut tokens from "
        "that end.",
    )
    loss_scope: Literal["all", "last"] = option(
        "all", help="Which assistant turns are trained on: all of them, or the last."
    )

    def __post_init__(self) -> None:
        if self.max_length is not None and self.max_length < 1:
            raise ConfigError(
                f"--max-length must be at least 1, got {self.max_length}",
                fix="pass a positive number of tokens, or leave it out for no limit",
            )
        parent = getattr(super(), "__post_init__", None)
        if parent is not None:
            parent()

    def template_options(self) -> dict[str, Any]:
        """The options for ``martlet.load_template(tokenizer, self.template, **options)``: the
        common ones, and the named template's own."""
        from martlet.compose import chosen_options

        return {
            "system": self.system,
            "max_length": self.max_length,
            "truncation": self.truncation_strategy,
            "loss_scope": self.loss_scope,
            **chosen_options(self, "template"),
        }


@dataclass(kw_only=True)
class DatasetReadOptions:
    """Which datasets to read, and how.

    What every dataset source's ``read`` is given (:meth:`read_options`); the source checks
    what only it knows (``--dataset-format``'s names, the hub's)."""

    dataset: list[str] = option(
        default_factory=list,
        help="Datasets to read: NAME_OR_PATH[:subset][#N], several allowed "
        "(a registered name, a local file or folder, or a hub id).",
        metavar="SPEC",
        aliases=("train_dataset",),
    )
    dataset_source: str = option(
        "auto",
        help="The dataset source that reads every dataset: auto (for each, the installed "
        "source that can read it) or one by name, with its own options.",
        names_of="dataset_sources",
    )
    streaming: bool = option(
        False, help="Read datasets lazily instead of loading them into memory."
    )
    columns: dict[str, str] | None = option(
        None,
        help='Rename columns before conversion, as JSON: \'{"their_name": "our_name"}\'; '
        "a target that is no format field is kept in the rows.",
    )
    on_bad_rows: Literal["error", "skip"] = option(
        "error",
        help="What to do with a row that cannot be used: stop with an error naming it, or "
        "skip it and report the skipped rows by reason.",
    )
    dataset_format: str | None = option(
        None,
        help="Force the input format (messages, sharegpt, alpaca, query_response, preference, "
        "kto, text) instead of detecting it per row.",
    )
    dataset_hub: Literal["huggingface", "modelscope"] | None = option(
        None,
        help="The hub of hub ids and registered datasets (default: Hugging Face where the "
        "dataset is there); hf::org/name and ms::org/name choose per dataset.",
    )
    dataset_split: str | None = option(
        None, help="The split to read from a hub (default: the dataset's first split)."
    )
    model_name: list[str] = option(
        default_factory=list,
        help="The assistant's name for self-cognition data: English, then optionally Chinese.",
        metavar="NAME",
    )
    model_author: list[str] = option(
        default_factory=list,
        help="Who made the assistant, for self-cognition data: English, then optionally Chinese.",
        metavar="AUTHOR",
    )
    dataset_num_proc: int = option(
        1, help="Processes for preparing hub datasets.", aliases=("num_proc",)
    )
    data_seed: int = option(
        DEFAULT_SEED, help="Seed for #N sampling, shuffling and the validation split."
    )

    def __post_init__(self) -> None:
        self.columns = check_columns(self.columns)
        if self.dataset_num_proc < 1:
            raise ConfigError(f"--dataset-num-proc must be at least 1, got {self.dataset_num_proc}")
        check_names(self.model_name, "--model-name")
        check_names(self.model_author, "--model-author")
        parent = getattr(super(), "__post_init__", None)
        if parent is not None:
            parent()

    def read_options(self) -> dict[str, Any]:
        """The keyword options for :func:`martlet.load_dataset` / :func:`load_datasets`: the
        common ones, and the source named by ``--dataset-source`` with its own options."""
        from martlet.compose import chosen_options

        out: dict[str, Any] = {
            "streaming": self.streaming,
            "on_bad_rows": self.on_bad_rows,
            "seed": self.data_seed,
        }
        if self.columns:
            out["columns"] = self.columns
        if self.dataset_format:
            out["format"] = self.dataset_format
        if self.dataset_hub:
            out["hub"] = self.dataset_hub
        if self.dataset_split:
            out["split"] = self.dataset_split
        if self.model_name:
            out["model_name"] = tuple(self.model_name)
        if self.model_author:
            out["model_author"] = tuple(self.model_author)
        if self.dataset_num_proc > 1:
            out["num_proc"] = self.dataset_num_proc
        if self.dataset_source and self.dataset_source != "auto":
            out["source"] = self.dataset_source
            out.update(chosen_options(self, "dataset_source"))
        return out
