"""``martlet megatron convert``: Llama-family weights between a Hugging Face folder and a
Megatron-Core checkpoint directory (ms-swift: ``swift export --to_mcore true`` /
``--to_hf true``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import click
from martlet.cli import config_command
from martlet.config import option
from martlet.errors import ConfigError

from martlet_megatron.options import check_sizes


@dataclass(kw_only=True)
class ConvertConfig:
    model: str = option(
        help="What to convert: a Hugging Face model folder (--to mcore) or a Megatron "
        "checkpoint directory (--to hf).",
        aliases=("model_id_or_path", "mcore_model", "load"),
        metavar="DIR",
    )
    to: Literal["mcore", "hf"] | None = option(
        None,
        help="The format to write: mcore (Megatron-Core GPTModel, Megatron-LM's torch "
        "checkpoint layout) or hf (config, tokenizer, model.safetensors).",
    )
    to_mcore: bool = option(False, help="The same as --to mcore (ms-swift's spelling).")
    to_hf: bool = option(False, help="The same as --to hf (ms-swift's spelling).")
    output_dir: str = option(help="Where to write.", aliases=("output", "save"), metavar="DIR")
    tensor_model_parallel_size: int = option(
        1,
        help="--to mcore: tensor parallel ranks to split each layer over.",
        aliases=("tp", "tp_size"),
        metavar="N",
    )
    pipeline_model_parallel_size: int = option(
        1,
        help="--to mcore: pipeline stages to split the layers into.",
        aliases=("pp", "pp_size"),
        metavar="N",
    )
    make_vocab_size_divisible_by: int = option(
        128,
        help="--to mcore: pad the vocabulary to a multiple of this times the tensor parallel "
        "size (Megatron's default: 128).",
        metavar="N",
    )
    layout: Literal["te", "local"] = option(
        "te",
        help="--to mcore: the layer names of Megatron-Core's Transformer Engine spec (te: "
        "norms fused into linear_qkv/linear_fc1) or of its local spec (local).",
    )
    hf_config: str | None = option(
        None,
        help="--to hf: a model folder whose config.json and tokenizer describe the "
        "checkpoint (default: the ones `--to mcore` stored in it).",
        metavar="DIR",
    )
    allow_pickle: bool = option(
        False,
        help="--to hf: load checkpoint files that hold arbitrary Python objects (Megatron-LM's "
        "own training stores its arguments so); only for checkpoints you trust.",
    )
    overwrite: bool = option(False, help="Replace a non-empty --output-dir.")

    def __post_init__(self) -> None:
        chosen = {self.to} - {None}
        chosen |= {"mcore"} if self.to_mcore else set()
        chosen |= {"hf"} if self.to_hf else set()
        if len(chosen) != 1:
            raise ConfigError(
                "say which format to write" if not chosen else "--to names two formats",
                fix="pass --to mcore (Hugging Face -> Megatron) or --to hf (Megatron -> "
                "Hugging Face)",
            )
        self.to = chosen.pop()
        check_sizes(
            self.tensor_model_parallel_size,
            self.pipeline_model_parallel_size,
            divisible_by=self.make_vocab_size_divisible_by,
        )


@config_command(ConvertConfig, name="convert")
def convert(config: ConvertConfig) -> None:
    """Convert weights between a Hugging Face model folder and a Megatron-Core checkpoint
    (Llama, Qwen2, Mistral), split for tensor and pipeline parallel ranks.

    \b
    martlet megatron convert --model HF_DIR --to mcore --output-dir MCORE_DIR \\
        --tensor-model-parallel-size 2 --pipeline-model-parallel-size 2
    martlet megatron convert --model MCORE_DIR --to hf --output-dir HF_DIR
    """
    from martlet_megatron import convert as conversion

    if config.to == "mcore":
        out = conversion.to_mcore(
            config.model,
            config.output_dir,
            tp=config.tensor_model_parallel_size,
            pp=config.pipeline_model_parallel_size,
            divisible_by=config.make_vocab_size_divisible_by,
            layout=config.layout,
            overwrite=config.overwrite,
        )
        click.echo(
            f"wrote a Megatron-Core checkpoint to {out} (tensor parallel "
            f"{config.tensor_model_parallel_size}, pipeline parallel "
            f"{config.pipeline_model_parallel_size}, {config.layout} layout)"
        )
    else:
        out = conversion.to_hf(
            config.model,
            config.output_dir,
            hf_config=config.hf_config,
            overwrite=config.overwrite,
            allow_pickle=config.allow_pickle,
        )
        click.echo(f"wrote a Hugging Face model to {out}")


@click.group(name="megatron")
def megatron() -> None:
    """Megatron-Core: convert weights to and from Hugging Face (`convert`)."""


megatron.add_command(convert)
