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


@dataclass(kw_only=True)
class ModelOptions:
    """Which model to load, and how."""

    model: str = option(
        help="Model: a registered id (`martlet model list`), a local folder or .gguf file, or a "
        "hub id already downloaded.",
        aliases=("model_type", "model_id_or_path"),
        metavar="ID_OR_PATH",
    )
    torch_dtype: Literal["auto", "bfloat16", "float16", "float32"] = option(
        "auto", help="Dtype of the weights; auto keeps the checkpoint's own."
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

    def __post_init__(self) -> None:
        if not str(self.model).strip():
            raise ConfigError("--model is empty", fix="name a model id, a folder or a .gguf file")
        parent = getattr(super(), "__post_init__", None)
        if parent is not None:
            parent()

    def loader_options(self) -> dict[str, Any]:
        """The options for ``martlet.load_model(self.model, **options)``."""
        out: dict[str, Any] = {
            "torch_dtype": self.torch_dtype,
            "trust_remote_code": self.trust_remote_code,
        }
        for name, value in (
            ("device_map", self.device_map),
            ("attn_impl", self.attn_impl),
            ("max_memory", self.max_memory),
            ("revision", self.model_revision),
        ):
            if value is not None:
                out[name] = value
        return out


@dataclass(kw_only=True)
class TemplateOptions:
    """How conversations become tokens."""

    template: str | None = option(
        None,
        help="Chat template: auto (the tokenizer's own) or a registered one (chatml, llama3, "
        "qwen, ...); default auto, falling back on the model family's template.",
        aliases=("template_type",),
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
        """The options for ``martlet.load_template(tokenizer, self.template, **options)``."""
        return {
            "system": self.system,
            "max_length": self.max_length,
            "truncation": self.truncation_strategy,
            "loss_scope": self.loss_scope,
        }
