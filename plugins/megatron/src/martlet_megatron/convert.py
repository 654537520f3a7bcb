"""Llama-family weights between the Hugging Face layout and Megatron-Core's ``GPTModel``.

Megatron-Core's names, for one pipeline stage and one tensor parallel rank::

    embedding.word_embeddings.weight                          first stage; vocabulary rows split
    decoder.layers.N.self_attention.linear_qkv.weight         rows: q, k, v interleaved per
                                                              query group; split by groups
    decoder.layers.N.self_attention.linear_qkv.bias           Qwen2's q/k/v bias, the same layout
    decoder.layers.N.self_attention.linear_qkv.layer_norm_weight   input RMSNorm (replicated)
    decoder.layers.N.self_attention.linear_proj.weight        o_proj; columns split (row-parallel)
    decoder.layers.N.mlp.linear_fc1.weight                    [gate; up], each split per rank
    decoder.layers.N.mlp.linear_fc1.layer_norm_weight         post-attention RMSNorm (replicated)
    decoder.layers.N.mlp.linear_fc2.weight                    down_proj; columns split
    decoder.final_layernorm.weight                            last stage
    output_layer.weight                                       last stage; vocabulary rows split

That is the Transformer Engine layout (``layout="te"``: the norms fused into the following
linear layer); Megatron-Core's ``local`` layer spec keeps them apart
(``decoder.layers.N.input_layernorm.weight``, ``decoder.layers.N.pre_mlp_layernorm.weight``).
``N`` counts from 0 in every pipeline stage. The vocabulary is padded with zero rows to a
multiple of ``make_vocab_size_divisible_by × TP`` (Megatron's ``padded_vocab_size``); the way
back drops them. Tensors keep their dtype, so HF → Megatron → HF gives the same bytes.

A Megatron checkpoint directory (Megatron-LM's ``torch`` format, ``checkpointing.py``)::

    latest_checkpointed_iteration.txt                         "1"
    iter_0000001/mp_rank_TT/model_optim_rng.pt                (PP = 1)
    iter_0000001/mp_rank_TT_PPP/model_optim_rng.pt            (PP > 1)

each file ``{"model": state_dict, "checkpoint_version": 3.0, "iteration": 1, "args": Namespace}``.
Next to it this module writes the HF ``config.json``, the tokenizer's files and
``martlet_megatron.json``, so the directory converts back on its own.
"""

from __future__ import annotations

import json
import re
import shutil
from argparse import Namespace
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from martlet.errors import ConfigError

from martlet_megatron.families import Shape, check_split, read_config, shape_of

#: the file names Megatron-LM's legacy (``--ckpt-format torch``) checkpoints use
TRACKER = "latest_checkpointed_iteration.txt"
FILENAME = "model_optim_rng.pt"
CHECKPOINT_VERSION = 3.0
META = "martlet_megatron.json"
#: HF files that travel with the weights (tokenizer, generation settings, chat template)
SIDE_FILES = (
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
)
LAYOUTS = ("te", "local")

# how a full (TP = 1) Megatron tensor is split over tensor parallel ranks
COLUMN, ROW, FC1, REPLICATED, VOCAB = "column", "row", "fc1", "replicated", "vocab"


def layer_rules(shape: Shape, layout: str = "te") -> dict[str, str]:
    """Megatron-Core's names inside ``decoder.layers.N.`` -> how they split over TP ranks."""
    if layout not in LAYOUTS:
        raise ConfigError(f"unknown Megatron layer layout {layout!r}", fix="te or local")
    rules = {
        "self_attention.linear_qkv.weight": COLUMN,
        "self_attention.linear_proj.weight": ROW,
        "mlp.linear_fc1.weight": FC1,
        "mlp.linear_fc2.weight": ROW,
    }
    if shape.qkv_bias:
        rules["self_attention.linear_qkv.bias"] = COLUMN
    if layout == "te":
        rules["self_attention.linear_qkv.layer_norm_weight"] = REPLICATED
        rules["mlp.linear_fc1.layer_norm_weight"] = REPLICATED
    else:
        rules["input_layernorm.weight"] = REPLICATED
        rules["pre_mlp_layernorm.weight"] = REPLICATED
    return rules


def _norm_names(layout: str) -> tuple[str, str]:
    if layout == "te":
        return "self_attention.linear_qkv.layer_norm_weight", "mlp.linear_fc1.layer_norm_weight"
    return "input_layernorm.weight", "pre_mlp_layernorm.weight"


# ------------------------------------------------------------------ q, k, v interleaving


def interleave_qkv(q: Any, k: Any, v: Any, shape: Shape) -> Any:
    """HF's separate q, k, v (weights ``[out, hidden]`` or biases ``[out]``) as Megatron's
    ``linear_qkv``: for each query group, its query heads, then its key head, then its value
    head."""
    import torch

    groups, per, d = shape.num_query_groups, shape.heads_per_group, shape.head_dim
    rest = tuple(q.shape[1:])
    parts = (q.reshape(groups, per * d, *rest), k.reshape(groups, d, *rest))
    return torch.cat((*parts, v.reshape(groups, d, *rest)), dim=1).reshape(-1, *rest)


def split_qkv(qkv: Any, shape: Shape) -> tuple[Any, Any, Any]:
    """The inverse of :func:`interleave_qkv`: HF's q, k, v (contiguous copies)."""
    groups, per, d = shape.num_query_groups, shape.heads_per_group, shape.head_dim
    rest = tuple(qkv.shape[1:])
    grouped = qkv.reshape(groups, (per + 2) * d, *rest)
    q, k, v = grouped.split([per * d, d, d], dim=1)
    return (
        q.reshape(-1, *rest).contiguous(),
        k.reshape(-1, *rest).contiguous(),
        v.reshape(-1, *rest).contiguous(),
    )


# ------------------------------------------------------------------ tensor parallel splits


def split_tensor(tensor: Any, rule: str, tp: int, padded_vocab: int | None = None) -> list[Any]:
    """A full Megatron tensor as ``tp`` ranks hold it (each its own contiguous copy, so a saved
    shard holds only its own bytes)."""
    import torch

    if rule == REPLICATED:
        return [tensor.clone() for _ in range(tp)]
    if rule == VOCAB:
        if padded_vocab is not None and padded_vocab > tensor.shape[0]:
            pad = tensor.new_zeros((padded_vocab - tensor.shape[0], *tensor.shape[1:]))
            tensor = torch.cat((tensor, pad))
        rule = COLUMN
    if rule == COLUMN:
        return [c.clone() for c in tensor.chunk(tp, dim=0)]
    if rule == ROW:
        return [c.clone() for c in tensor.chunk(tp, dim=1)]
    if rule == FC1:
        gate, up = tensor.chunk(2, dim=0)
        return [torch.cat((g, u)) for g, u in zip(gate.chunk(tp), up.chunk(tp), strict=True)]
    raise ValueError(f"unknown split rule {rule!r}")


def merge_tensor(parts: list[Any], rule: str, vocab: int | None = None) -> Any:
    """The full tensor from each rank's part (the inverse of :func:`split_tensor`)."""
    import torch

    if rule == REPLICATED:
        return parts[0]
    if rule == VOCAB:
        whole = torch.cat(parts, dim=0)
        return whole[:vocab].contiguous() if vocab is not None else whole
    if rule == COLUMN:
        return torch.cat(parts, dim=0)
    if rule == ROW:
        return torch.cat(parts, dim=1)
    if rule == FC1:
        halves = [p.chunk(2, dim=0) for p in parts]
        return torch.cat([h[0] for h in halves] + [h[1] for h in halves], dim=0)
    raise ValueError(f"unknown split rule {rule!r}")


# ------------------------------------------------------------------ HF <-> full Megatron


def _need(state: Mapping[str, Any], name: str) -> Any:
    try:
        return state[name]
    except KeyError:
        raise ConfigError(
            f"the weights have no {name!r}",
            why="a Llama-family checkpoint names every layer's weights",
            fix="check that the folder holds the whole model (all safetensors shards)",
        ) from None


def hf_layer_to_mcore(
    state: Mapping[str, Any], i: int, shape: Shape, layout: str = "te"
) -> dict[str, Any]:
    """HF layer ``i`` as Megatron's full (TP = 1) tensors, named inside ``decoder.layers.N.``."""
    import torch

    p = f"model.layers.{i}."
    attn, mlp = p + "self_attn.", p + "mlp."
    q, k, v = (_need(state, f"{attn}{x}_proj.weight") for x in "qkv")
    out = {
        "self_attention.linear_qkv.weight": interleave_qkv(q, k, v, shape),
        "self_attention.linear_proj.weight": _need(state, attn + "o_proj.weight"),
        "mlp.linear_fc1.weight": torch.cat(
            (_need(state, mlp + "gate_proj.weight"), _need(state, mlp + "up_proj.weight"))
        ),
        "mlp.linear_fc2.weight": _need(state, mlp + "down_proj.weight"),
    }
    if shape.qkv_bias:
        qb, kb, vb = (_need(state, f"{attn}{x}_proj.bias") for x in "qkv")
        out["self_attention.linear_qkv.bias"] = interleave_qkv(qb, kb, vb, shape)
    pre_attn, pre_mlp = _norm_names(layout)
    out[pre_attn] = _need(state, p + "input_layernorm.weight")
    out[pre_mlp] = _need(state, p + "post_attention_layernorm.weight")
    return out


def mcore_layer_to_hf(
    layer: Mapping[str, Any], i: int, shape: Shape, layout: str = "te"
) -> dict[str, Any]:
    """The inverse of :func:`hf_layer_to_mcore`: HF names of layer ``i``."""
    p = f"model.layers.{i}."
    q, k, v = split_qkv(layer["self_attention.linear_qkv.weight"], shape)
    gate, up = layer["mlp.linear_fc1.weight"].chunk(2, dim=0)
    pre_attn, pre_mlp = _norm_names(layout)
    out = {
        p + "self_attn.q_proj.weight": q,
        p + "self_attn.k_proj.weight": k,
        p + "self_attn.v_proj.weight": v,
        p + "self_attn.o_proj.weight": layer["self_attention.linear_proj.weight"],
        p + "mlp.gate_proj.weight": gate.contiguous(),
        p + "mlp.up_proj.weight": up.contiguous(),
        p + "mlp.down_proj.weight": layer["mlp.linear_fc2.weight"],
        p + "input_layernorm.weight": layer[pre_attn],
        p + "post_attention_layernorm.weight": layer[pre_mlp],
    }
    if shape.qkv_bias:
        qb, kb, vb = split_qkv(layer["self_attention.linear_qkv.bias"], shape)
        out.update({p + "self_attn.q_proj.bias": qb, p + "self_attn.k_proj.bias": kb})
        out[p + "self_attn.v_proj.bias"] = vb
    return out


def _output_weight(state: Mapping[str, Any], shape: Shape) -> Any:
    if not shape.tied and "lm_head.weight" in state:
        return state["lm_head.weight"]
    if shape.tied:
        return state.get("lm_head.weight", _need(state, "model.embed_tokens.weight"))
    return _need(state, "lm_head.weight")


def stage_layers(num_layers: int, pp: int) -> list[range]:
    """The layers of each pipeline stage (equal shares, as Megatron splits by default)."""
    per = num_layers // pp
    return [range(s * per, (s + 1) * per) for s in range(pp)]


def hf_to_mcore(
    state: Mapping[str, Any],
    shape: Shape,
    *,
    tp: int = 1,
    pp: int = 1,
    divisible_by: int = 128,
    layout: str = "te",
    ranks: Iterable[tuple[int, int]] | None = None,
) -> dict[tuple[int, int], dict[str, Any]]:
    """HF weights as Megatron-Core state dicts: ``{(pipeline stage, tensor rank): state}``
    (only the ``ranks`` given, default all). With tied embeddings and more than one stage,
    the last stage holds ``output_layer.weight`` too, a copy of the embeddings, as Megatron
    keeps it."""
    check_split(shape, tp, pp)
    wanted = set(ranks) if ranks is not None else {(s, t) for s in range(pp) for t in range(tp)}
    stages = {s for s, _ in wanted}
    padded = shape.padded_vocab(tp, divisible_by)
    rules = layer_rules(shape, layout)
    shards: dict[tuple[int, int], dict[str, Any]] = {key: {} for key in sorted(wanted)}

    def put(stage: int, name: str, tensor: Any, rule: str) -> None:
        parts = split_tensor(tensor, rule, tp, padded)
        for t, part in enumerate(parts):
            if (stage, t) in wanted:
                shards[(stage, t)][name] = part

    if 0 in stages:
        put(0, "embedding.word_embeddings.weight", _need(state, "model.embed_tokens.weight"), VOCAB)
    for stage, layers in enumerate(stage_layers(shape.num_layers, pp)):
        if stage not in stages:
            continue
        for local, i in enumerate(layers):
            full = hf_layer_to_mcore(state, i, shape, layout)
            for name, rule in rules.items():
                put(stage, f"decoder.layers.{local}.{name}", full[name], rule)
    last = pp - 1
    if last in stages:
        put(last, "decoder.final_layernorm.weight", _need(state, "model.norm.weight"), REPLICATED)
        if not shape.tied or pp > 1:
            put(last, "output_layer.weight", _output_weight(state, shape), VOCAB)
    for (stage, _), shard in shards.items():  # what GPTModel.state_dict() holds besides weights
        shard.update({name: None for name in extra_state_names(shard, layout, stage == last)})
    return shards


def extra_state_names(state: Mapping[str, Any], layout: str, last: bool) -> list[str]:
    """The ``_extra_state`` entries ``GPTModel.state_dict()`` has next to these weights (its
    parallel linear layers', Transformer Engine's attention): ``None`` in a converted
    checkpoint (no FP8 metadata), so that a strict load finds every key."""
    modules = ("self_attention.linear_qkv", "self_attention.linear_proj")
    modules += ("mlp.linear_fc1", "mlp.linear_fc2")
    if layout == "te":
        modules += ("self_attention.core_attention",)
    layers = sorted({int(m.group(1)) for k in state if (m := _LAYER.match(k))})
    names = [f"decoder.layers.{i}.{module}._extra_state" for i in layers for module in modules]
    if last:
        names.append("output_layer._extra_state")
    return names


_LAYER = re.compile(r"^decoder\.layers\.(\d+)\.(.+)$")


def detect_layout(state: Mapping[str, Any]) -> str:
    """``te`` or ``local``, from a Megatron state dict's names."""
    if any(k.endswith("linear_qkv.layer_norm_weight") for k in state):
        return "te"
    if any(k.endswith("input_layernorm.weight") for k in state):
        return "local"
    raise ConfigError(
        "cannot tell the layer layout of this Megatron checkpoint",
        why="it names neither linear_qkv.layer_norm_weight (Transformer Engine) nor "
        "input_layernorm.weight (local layers)",
    )


def mcore_to_hf(
    shards: Mapping[tuple[int, int], Mapping[str, Any]], shape: Shape
) -> dict[str, Any]:
    """HF weights from every rank's Megatron-Core state dict (``{(stage, tensor rank):
    state}``, as :func:`hf_to_mcore` returns and :func:`load_checkpoint` reads). Stages may
    hold different numbers of layers."""
    stages = sorted({s for s, _ in shards})
    tp = len({t for _, t in shards})
    if not stages or stages != list(range(len(stages))) or len(shards) != tp * len(stages):
        raise ConfigError(
            "the Megatron checkpoint is missing ranks",
            why=f"found (stage, tensor rank) pairs {sorted(shards)}",
            fix="convert a checkpoint directory that holds every mp_rank_* folder",
        )
    shards = {
        key: {k: v for k, v in state.items() if not k.endswith("_extra_state")}
        for key, state in shards.items()
    }
    layout = detect_layout(next(iter(shards.values())))
    rules = layer_rules(shape, layout)

    def merged(stage: int, name: str, rule: str, vocab: int | None = None) -> Any:
        return merge_tensor([shards[(stage, t)][name] for t in range(tp)], rule, vocab)

    out: dict[str, Any] = {}
    out["model.embed_tokens.weight"] = merged(
        0, "embedding.word_embeddings.weight", VOCAB, shape.vocab_size
    )
    offset = 0
    for stage in stages:
        count = 1 + max(
            (int(m.group(1)) for k in shards[(stage, 0)] if (m := _LAYER.match(k))), default=-1
        )
        for local in range(count):
            layer = {
                name: merged(stage, f"decoder.layers.{local}.{name}", rule)
                for name, rule in rules.items()
            }
            out.update(mcore_layer_to_hf(layer, offset + local, shape, layout))
        offset += count
    if offset != shape.num_layers:
        raise ConfigError(
            f"the Megatron checkpoint holds {offset} layers; config.json says {shape.num_layers}",
            fix="convert the checkpoint with the config.json of the model it was made from",
        )
    last = stages[-1]
    out["model.norm.weight"] = merged(last, "decoder.final_layernorm.weight", REPLICATED)
    if not shape.tied:
        if "output_layer.weight" not in shards[(last, 0)]:
            raise ConfigError(
                "the Megatron checkpoint has no output_layer.weight",
                why="config.json says the output layer is not tied to the embeddings",
            )
        out["lm_head.weight"] = merged(last, "output_layer.weight", VOCAB, shape.vocab_size)
    return out


# ------------------------------------------------------------------ files


def read_hf_weights(model_dir: str | Path) -> dict[str, Any]:
    """Every tensor of a HF model folder (safetensors, or ``pytorch_model*.bin``), as stored."""
    folder = Path(model_dir)
    files = sorted(folder.glob("*.safetensors"))
    state: dict[str, Any] = {}
    if files:
        from safetensors.torch import load_file

        for file in files:
            state.update(load_file(str(file)))
        return state
    bins = sorted(folder.glob("pytorch_model*.bin"))
    if not bins:
        raise ConfigError(
            f"no weights in {folder}",
            why="expected model.safetensors (or its shards) or pytorch_model.bin",
            fix="pass a Hugging Face model folder (`martlet download ID --output-dir DIR`)",
        )
    import torch

    for file in bins:
        state.update(torch.load(str(file), map_location="cpu", weights_only=True))
    return state


def checkpoint_args(shape: Shape, tp: int, pp: int, divisible_by: int, hf: dict) -> Namespace:
    """What Megatron-LM reads back from ``args`` of a checkpoint (``check_checkpoint_args``,
    ``load_args_from_checkpoint``)."""
    rope = hf.get("rope_theta") or (hf.get("rope_parameters") or {}).get("rope_theta") or 10000
    return Namespace(
        num_layers=shape.num_layers,
        hidden_size=shape.hidden_size,
        ffn_hidden_size=shape.ffn_hidden_size,
        num_attention_heads=shape.num_heads,
        group_query_attention=shape.num_query_groups != shape.num_heads,
        num_query_groups=shape.num_query_groups,
        kv_channels=shape.head_dim,
        max_position_embeddings=int(hf.get("max_position_embeddings") or 4096),
        seq_length=int(hf.get("max_position_embeddings") or 4096),
        position_embedding_type="rope",
        rotary_base=float(rope),
        normalization="RMSNorm",
        norm_epsilon=float(hf.get("rms_norm_eps") or 1e-6),
        swiglu=True,
        add_bias_linear=False,
        add_qkv_bias=shape.qkv_bias,
        untie_embeddings_and_output_weights=not shape.tied,
        vocab_size=shape.vocab_size,
        padded_vocab_size=shape.padded_vocab(tp, divisible_by),
        make_vocab_size_divisible_by=divisible_by,
        tensor_model_parallel_size=tp,
        pipeline_model_parallel_size=pp,
        virtual_pipeline_model_parallel_size=None,
        ckpt_format="torch",
        iteration=1,
        consumed_train_samples=0,
        consumed_valid_samples=0,
    )


def rank_dir(tp_rank: int, pp_rank: int, pp: int) -> str:
    """``mp_rank_TT`` (one stage) or ``mp_rank_TT_PPP``, as Megatron-LM names them."""
    return f"mp_rank_{tp_rank:02d}" if pp == 1 else f"mp_rank_{tp_rank:02d}_{pp_rank:03d}"


def _copy_side_files(source: Path, target: Path) -> None:
    for name in SIDE_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, target / name)


def _prepare_output(output: str | Path, overwrite: bool) -> Path:
    out = Path(output)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise ConfigError(
                f"{out} is not empty",
                why="converting writes a whole directory",
                fix="pass another --output-dir, or --overwrite to replace it",
            )
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def save_checkpoint(
    shards: Mapping[tuple[int, int], Mapping[str, Any]],
    out: Path,
    *,
    shape: Shape,
    tp: int,
    pp: int,
    divisible_by: int,
    hf_config: dict,
    iteration: int = 1,
) -> None:
    """Write ``shards`` as a Megatron-LM checkpoint directory under ``out``."""
    import torch

    args = checkpoint_args(shape, tp, pp, divisible_by, hf_config)
    args.iteration = iteration
    folder = out / f"iter_{iteration:07d}"
    for (stage, t), state in shards.items():
        path = folder / rank_dir(t, stage, pp) / FILENAME
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(
            {
                "model": dict(state),
                "checkpoint_version": CHECKPOINT_VERSION,
                "iteration": iteration,
                "args": args,
            },
            path,
        )
    (out / TRACKER).write_text(str(iteration))


def to_mcore(
    model_dir: str | Path,
    output: str | Path,
    *,
    tp: int = 1,
    pp: int = 1,
    divisible_by: int = 128,
    layout: str = "te",
    overwrite: bool = False,
) -> Path:
    """Convert a HF model folder into a Megatron-Core checkpoint directory; return it."""
    source = Path(model_dir)
    hf_config = read_config(source)
    if not hf_config:
        raise ConfigError(
            f"{source} is not a Hugging Face model folder (no config.json)",
            fix="pass a local model folder (`martlet download ID --output-dir DIR` first)",
        )
    shape = shape_of(hf_config)
    check_split(shape, tp, pp)
    state = read_hf_weights(source)
    shards = hf_to_mcore(state, shape, tp=tp, pp=pp, divisible_by=divisible_by, layout=layout)
    out = _prepare_output(output, overwrite)
    save_checkpoint(
        shards, out, shape=shape, tp=tp, pp=pp, divisible_by=divisible_by, hf_config=hf_config
    )
    (out / "config.json").write_text(json.dumps(hf_config, indent=2), encoding="utf-8")
    _copy_side_files(source, out)
    meta = {
        "format": "megatron-core GPTModel, Megatron-LM torch checkpoint",
        "layout": layout,
        "tensor_model_parallel_size": tp,
        "pipeline_model_parallel_size": pp,
        "make_vocab_size_divisible_by": divisible_by,
        "vocab_size": shape.vocab_size,
        "padded_vocab_size": shape.padded_vocab(tp, divisible_by),
        "model_type": shape.model_type,
        "source": str(source),
    }
    (out / META).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return out


def _iteration_dir(checkpoint: Path) -> Path:
    tracker = checkpoint / TRACKER
    if not tracker.is_file():
        raise ConfigError(
            f"{checkpoint} is not a Megatron checkpoint directory (no {TRACKER})",
            fix="pass the directory `martlet megatron convert --to mcore` (or Megatron-LM) wrote",
        )
    value = tracker.read_text().strip()
    folder = checkpoint / ("release" if value == "release" else f"iter_{int(value):07d}")
    if not folder.is_dir():
        raise ConfigError(f"{TRACKER} names {folder.name}, which is missing")
    return folder


def _load_file(path: Path, allow_pickle: bool) -> dict[str, Any]:
    import pickle

    import torch

    try:
        with torch.serialization.safe_globals([Namespace]):
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if not allow_pickle:
            raise ConfigError(
                f"{path} holds Python objects beyond tensors and settings",
                why=str(exc).splitlines()[0],
                fix="Megatron-LM's training stores its arguments as arbitrary objects: if you "
                "trust this checkpoint, pass --allow-pickle",
            ) from None
        return torch.load(str(path), map_location="cpu", weights_only=False)


def load_checkpoint(
    checkpoint: str | Path, allow_pickle: bool = False
) -> dict[tuple[int, int], dict[str, Any]]:
    """Every rank's model state of a Megatron checkpoint directory: ``{(stage, tensor rank):
    state}``."""
    folder = _iteration_dir(Path(checkpoint))
    pattern = re.compile(r"^mp_rank_(\d{2})(?:_(\d{3}))?$")
    shards: dict[tuple[int, int], dict[str, Any]] = {}
    expected: set[tuple[int, int]] = set()
    for sub in sorted(folder.iterdir()):
        match = pattern.match(sub.name)
        if not match or not (sub / FILENAME).is_file():
            continue
        data = _load_file(sub / FILENAME, allow_pickle)
        args = data.get("args")
        tp = getattr(args, "tensor_model_parallel_size", None)
        pp = getattr(args, "pipeline_model_parallel_size", None)
        if isinstance(tp, int) and isinstance(pp, int):
            expected |= {(s, t) for s in range(pp) for t in range(tp)}
        if "model" not in data:
            raise ConfigError(
                f"{sub / FILENAME} has no 'model' state",
                why="virtual pipeline checkpoints (model0, model1, ...) are not supported",
            )
        shards[(int(match.group(2) or 0), int(match.group(1)))] = data["model"]
    if not shards:
        raise ConfigError(f"no mp_rank_*/{FILENAME} in {folder}")
    if expected - set(shards):
        raise ConfigError(
            "the Megatron checkpoint is missing ranks",
            why=f"its arguments say {len(expected)} (stage, tensor rank) pairs; found "
            f"{sorted(shards)}",
            fix="convert a checkpoint directory that holds every mp_rank_* folder",
        )
    return shards


def to_hf(
    checkpoint: str | Path,
    output: str | Path,
    *,
    hf_config: str | Path | None = None,
    overwrite: bool = False,
    allow_pickle: bool = False,
) -> Path:
    """Convert a Megatron-Core checkpoint directory into a HF model folder (config.json,
    tokenizer files, model.safetensors); return it. ``hf_config``: a folder whose
    ``config.json`` (and tokenizer) describe the model, when the checkpoint has none."""
    from safetensors.torch import save_file

    source = Path(checkpoint)
    side = Path(hf_config) if hf_config else source
    config = read_config(side)
    if not config:
        raise ConfigError(
            f"no config.json in {side}",
            why="the Hugging Face config says which model the Megatron weights are",
            fix="pass --hf-config MODEL_DIR (the model the checkpoint was made from)",
        )
    shape = shape_of(config)
    try:
        state = mcore_to_hf(load_checkpoint(source, allow_pickle), shape)
    except (KeyError, RuntimeError) as exc:
        raise ConfigError(
            f"the Megatron weights in {source} do not fit the model config.json describes",
            why=f"{type(exc).__name__}: {exc}",
            fix="pass --hf-config with the folder of the model the checkpoint was made from",
        ) from None
    out = _prepare_output(output, overwrite)
    save_file(
        {k: v.contiguous() for k, v in state.items()},
        str(out / "model.safetensors"),
        metadata={"format": "pt"},
    )
    (out / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    _copy_side_files(side, out)
    return out
