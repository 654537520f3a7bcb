"""The megatron strategy's options, in ms-swift's (and Megatron-LM's) spelling. Imported to
build ``--help`` and to validate a config: no torch here."""

from __future__ import annotations

from dataclasses import dataclass

from martlet.config import option, require


@dataclass(kw_only=True)
class MegatronOptions:
    """Megatron-Core"""

    tensor_model_parallel_size: int = option(
        1,
        help="GPUs each layer is split over (tensor parallelism: attention heads and MLP "
        "columns). Must divide the number of processes, the attention heads and the key/value "
        "heads.",
        aliases=("tp", "tp_size"),
        metavar="N",
    )
    pipeline_model_parallel_size: int = option(
        1,
        help="Pipeline stages the layers are split into (`martlet megatron convert` writes "
        "them; training runs one stage: the loop drives one forward pass per micro-batch).",
        aliases=("pp", "pp_size"),
        metavar="N",
    )
    context_parallel_size: int = option(
        1,
        help="GPUs each sequence is split over (context parallelism; 1 here: the loop "
        "hands each rank whole rows).",
        aliases=("cp", "cp_size"),
        metavar="N",
    )
    sequence_parallel: bool = option(
        False,
        help="Split the activations outside attention and the MLP along the sequence over "
        "the tensor parallel ranks (less memory; needs --tensor-model-parallel-size > 1).",
        aliases=("sp",),
    )
    make_vocab_size_divisible_by: int = option(
        128,
        help="Pad the vocabulary to a multiple of this times the tensor parallel size, as "
        "Megatron does (the padding rows are zeros and dropped again on the way back).",
        metavar="N",
    )

    def __post_init__(self) -> None:
        check_sizes(
            self.tensor_model_parallel_size,
            self.pipeline_model_parallel_size,
            self.context_parallel_size,
            self.sequence_parallel,
            self.make_vocab_size_divisible_by,
        )


def check_sizes(
    tp: int, pp: int, cp: int = 1, sequence_parallel: bool = False, divisible_by: int = 128
) -> None:
    """Raise a ConfigError for sizes Megatron cannot use (no model or world size needed)."""
    for flag, value, example in (
        ("tensor-model-parallel-size", tp, "2"),
        ("pipeline-model-parallel-size", pp, "2"),
        ("context-parallel-size", cp, "1"),
        ("make-vocab-size-divisible-by", divisible_by, "128"),
    ):
        require(
            isinstance(value, int) and not isinstance(value, bool) and value >= 1,
            flag,
            value,
            "a whole number of at least 1",
            example,
        )
    if sequence_parallel and tp == 1:
        from martlet.errors import ConfigError

        raise ConfigError(
            "--sequence-parallel needs --tensor-model-parallel-size 2 or more",
            why="sequence parallelism splits activations over the tensor parallel ranks; with "
            "one rank there is nothing to split",
            fix="drop --sequence-parallel, or pass --tensor-model-parallel-size 2 (or more)",
        )


def check_world(world_size: int, tp: int, pp: int, cp: int = 1) -> None:
    """Raise a ConfigError unless TP×PP×CP divides the number of processes."""
    from martlet.errors import ConfigError

    model_parallel = tp * pp * cp
    if world_size % model_parallel:
        raise ConfigError(
            f"{world_size} processes cannot hold tensor × pipeline × context parallel groups "
            f"of {tp} × {pp} × {cp} = {model_parallel}",
            why="Megatron arranges the processes in groups of that size and replicates the "
            "groups for data parallelism, so the group size must divide the process count",
            fix=f"pass --nproc-per-node (× --nnodes) a multiple of {model_parallel}, or "
            "smaller parallel sizes",
        )
