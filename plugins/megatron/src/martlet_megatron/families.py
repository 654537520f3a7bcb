"""The model families the Megatron-Core conversion supports, read from a Hugging Face
``config.json`` (no torch here: the strategy's check uses it before anything loads)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from martlet.errors import ConfigError

#: HF ``model_type`` -> what it is called in messages. All are Megatron-Core GPT models with
#: RMSNorm, SwiGLU, rotary embeddings and grouped-query attention.
FAMILIES = {"llama": "Llama", "qwen2": "Qwen2", "mistral": "Mistral"}


@dataclass(frozen=True)
class Shape:
    """What the conversion needs to know of a model (from its HF config)."""

    model_type: str
    num_layers: int
    hidden_size: int
    ffn_hidden_size: int
    num_heads: int
    num_query_groups: int
    head_dim: int
    vocab_size: int
    qkv_bias: bool
    tied: bool

    @property
    def heads_per_group(self) -> int:
        return self.num_heads // self.num_query_groups

    def padded_vocab(self, tp: int, divisible_by: int = 128) -> int:
        """The vocabulary Megatron allocates: a multiple of ``divisible_by × tp``."""
        multiple = divisible_by * tp
        return -(-self.vocab_size // multiple) * multiple


def read_config(model: str | Path) -> dict[str, Any]:
    """The ``config.json`` of a model folder (``{}`` when there is none: a hub id)."""
    path = Path(model) / "config.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}", why=str(exc)) from exc


def shape_of(config: dict[str, Any] | Any) -> Shape:
    """The :class:`Shape` of a supported model; a ConfigError for any other."""
    get = config.get if isinstance(config, dict) else lambda k, d=None: getattr(config, k, d)
    model_type = str(get("model_type") or "")
    if model_type not in FAMILIES:
        raise ConfigError(
            f"the megatron conversion does not support model type {model_type or '?'!r}",
            why="weights are mapped onto Megatron-Core's GPTModel for "
            + ", ".join(f"{v} ({k})" for k, v in FAMILIES.items()),
            fix="use one of those families, or --parallel fsdp / deepspeed for this model",
        )
    name = FAMILIES[model_type]
    if get("attention_bias") or get("mlp_bias"):
        raise ConfigError(
            f"this {name} model has biases on its attention output or MLP layers",
            why="the conversion maps bias-free layers (and Qwen2's query/key/value bias)",
            fix="use --parallel fsdp or deepspeed for this model",
        )
    act = get("hidden_act") or "silu"
    if act != "silu":
        raise ConfigError(
            f"this {name} model's MLP activation is {act!r}",
            why="Megatron-Core's gated MLP is built here as SwiGLU (silu)",
            fix="use --parallel fsdp or deepspeed for this model",
        )
    heads = int(get("num_attention_heads"))
    hidden = int(get("hidden_size"))
    groups = int(get("num_key_value_heads") or heads)
    if heads % groups:
        raise ConfigError(
            f"{heads} attention heads do not split into {groups} key/value groups",
            why="config.json is inconsistent",
        )
    return Shape(
        model_type=model_type,
        num_layers=int(get("num_hidden_layers")),
        hidden_size=hidden,
        ffn_hidden_size=int(get("intermediate_size")),
        num_heads=heads,
        num_query_groups=groups,
        head_dim=int(get("head_dim") or hidden // heads),
        vocab_size=int(get("vocab_size")),
        qkv_bias=model_type == "qwen2",
        tied=bool(get("tie_word_embeddings", False)),
    )


def check_split(shape: Shape, tp: int, pp: int) -> None:
    """Raise a ConfigError unless the model splits into ``tp`` ranks and ``pp`` stages."""
    split = (
        ("attention heads", shape.num_heads),
        ("key/value heads", shape.num_query_groups),
        ("MLP columns", shape.ffn_hidden_size),
    )
    for what, count in split:
        if count % tp:
            sizes = [d for d in range(1, 65) if all(c % d == 0 for _, c in split)]
            raise ConfigError(
                f"--tensor-model-parallel-size {tp} does not divide the model's {count} {what}",
                why="Megatron gives every tensor parallel rank the same share of heads, "
                "key/value groups and MLP columns",
                fix=f"pass --tensor-model-parallel-size one of {', '.join(map(str, sizes))}",
            )
    if shape.num_layers % pp:
        stages = [d for d in range(1, shape.num_layers + 1) if shape.num_layers % d == 0]
        raise ConfigError(
            f"--pipeline-model-parallel-size {pp} does not divide the model's "
            f"{shape.num_layers} layers",
            why="Megatron gives every pipeline stage the same number of layers",
            fix=f"pass --pipeline-model-parallel-size one of {', '.join(map(str, stages))}",
        )
