"""Option groups that commands which load a model or format chats include in their configs.

A command's config dataclass inherits them (``class SftConfig(ModelOptions, TemplateOptions)``),
so ``--model``, ``--torch-dtype``, ``--template``, ``--max-length``, ... mean the same in every
command, with ms-swift's names accepted as aliases. Both are keyword-only dataclasses, so they
combine with any other fields in any order. Field names are unique across Martlet.

    opts = config  # an SftConfig
    model, tokenizer = martlet.load_model(opts.model, **opts.loader_options())
    template = martlet.load_template(tokenizer, opts.template, **opts.template_options())
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from martlet.config import option
from martlet.errors import ConfigError
from martlet.tasks import TASK_TYPES, check_task_type  # noqa: F401 - re-exported


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
