"""Write a Llama-family model and its byte-level BPE tokenizer as one GGUF file.

The file is what llama.cpp's ``convert_hf_to_gguf.py`` writes for ``LlamaForCausalLM`` (the
``llama`` architecture): the hyper-parameters llama.cpp reads, the tokenizer as metadata
(``tokenizer.ggml.*``, the chat template) and the weights under GGUF tensor names, with the q
and k projections permuted to llama.cpp's rotary layout. Norms and other 1-D tensors stay f32;
the chosen type applies to the 2-D weights whose rows split into its blocks (f16 otherwise,
as llama.cpp does).

Tensors are quantized and written one at a time (the tensor table goes first, from shapes
alone), so memory holds the model plus one tensor, and the file appears under its name only
when complete.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np
from martlet.errors import MartletError

from martlet_gguf.options import resolve_type

ARCH = "llama"
F32 = gguf.GGMLQuantizationType.F32

#: GGUF type name -> (tensor type of the 2-D weights, the file type llama.cpp records)
TYPES: dict[str, tuple[gguf.GGMLQuantizationType, gguf.LlamaFileType]] = {
    "f32": (F32, gguf.LlamaFileType.ALL_F32),
    "f16": (gguf.GGMLQuantizationType.F16, gguf.LlamaFileType.MOSTLY_F16),
    "bf16": (gguf.GGMLQuantizationType.BF16, gguf.LlamaFileType.MOSTLY_BF16),
    "q8_0": (gguf.GGMLQuantizationType.Q8_0, gguf.LlamaFileType.MOSTLY_Q8_0),
    "q5_0": (gguf.GGMLQuantizationType.Q5_0, gguf.LlamaFileType.MOSTLY_Q5_0),
    "q5_1": (gguf.GGMLQuantizationType.Q5_1, gguf.LlamaFileType.MOSTLY_Q5_1),
    "q4_0": (gguf.GGMLQuantizationType.Q4_0, gguf.LlamaFileType.MOSTLY_Q4_0),
    "q4_1": (gguf.GGMLQuantizationType.Q4_1, gguf.LlamaFileType.MOSTLY_Q4_1),
}

#: model types whose checkpoints are llama.cpp's ``llama`` architecture
LLAMA_TYPES = ("llama", "mistral")

#: pre-tokenizer regexes (as a ``Split`` holds them) -> llama.cpp's ``tokenizer.ggml.pre``
SPLIT_NAMES = {
    # Llama 3
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+": "llama-bpe",
    # Mistral's tekken (Mistral NeMo and later)
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
    r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+": "tekken",
}


class GgufExporter:
    """The ``gguf`` quantizer: ``martlet export --quant-method gguf`` writes
    ``OUTPUT_DIR/model-<type>.gguf``."""

    def export(
        self, model: Any, tokenizer: Any, output_dir: str, bits: int | None, **options: Any
    ) -> None:
        """Write ``model`` and ``tokenizer`` to ``output_dir/model-<type>.gguf``.

        The type is ``options["gguf_type"]`` or, without it, the one ``bits`` picks (32 f32,
        16 f16, 8 q8_0, 5 q5_0, 4 q4_0); ``calibration`` and other options are not used.
        """
        kind = resolve_type(bits, options.get("gguf_type"))
        path = write_gguf(model, tokenizer, Path(output_dir) / f"model-{kind}.gguf", kind)
        size = path.stat().st_size / 1e6
        print(f"martlet: wrote {path} ({kind}, {size:.1f} MB)", file=sys.stderr, flush=True)


def write_gguf(model: Any, tokenizer: Any, path: str | Path, gguf_type: str) -> Path:
    """Write ``model`` (a Llama-family causal LM) and ``tokenizer`` (byte-level BPE) as the
    GGUF file ``path``, its 2-D weights in ``gguf_type``; return the path.

    Raises:
        MartletError: the model is not llama.cpp's ``llama`` architecture, or the tokenizer
            is not byte-level BPE; nothing is written then.
        ConfigError: ``gguf_type`` is not a type written here.
    """
    kind = resolve_type(None, gguf_type)
    path = Path(path)
    shape = check_model(model)
    vocab = read_vocab(tokenizer, shape.vocab_size)
    tensors = list(plan_tensors(model, shape, TYPES[kind][0]))
    partial = path.with_name(path.name + ".partial")
    writer = gguf.GGUFWriter(partial, ARCH)
    try:
        add_model_info(writer, model, shape, TYPES[kind][1])
        add_vocab(writer, vocab)
        for t in tensors:  # the table first, from shapes: then one tensor at a time
            writer.add_tensor_info(t.name, t.byte_shape, np.dtype(np.uint8), t.nbytes, t.qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for t in tensors:
            writer.write_tensor_data(t.encode())
    except BaseException:
        writer.close()
        partial.unlink(missing_ok=True)
        raise
    writer.close()
    os.replace(partial, path)
    return path


# ---------------------------------------------------------------------- the model


@dataclass(frozen=True)
class ModelShape:
    """The sizes of a Llama-family model that the file records and the permutation needs."""

    vocab_size: int
    hidden: int
    layers: int
    ffn: int
    heads: int
    kv_heads: int
    head_dim: int
    context: int
    eps: float
    tied: bool


def check_model(model: Any) -> ModelShape:
    """The shape of ``model``, checked to be what llama.cpp's ``llama`` architecture runs.

    Raises:
        MartletError: an adapter that is not merged, another architecture, or a Llama
            variant llama.cpp's ``llama`` graph does not compute (another activation, an
            unsupported RoPE scaling).
    """
    if hasattr(model, "peft_config"):
        raise MartletError(
            "the GGUF export needs plain weights, not a model with an adapter on top",
            why="a GGUF file holds one set of weights; the adapter is a separate module",
            fix="pass --merge-lora to fold the adapter into the weights first",
        )
    config = model.config
    model_type = str(getattr(config, "model_type", ""))
    if model_type not in LLAMA_TYPES or model.get_output_embeddings() is None:
        raise MartletError(
            f"cannot write a {type(model).__name__} model as GGUF",
            why="the gguf exporter writes llama.cpp's 'llama' architecture: causal LMs of "
            f"model type {' or '.join(LLAMA_TYPES)} (LlamaForCausalLM, MistralForCausalLM)",
            fix="export this model with llama.cpp's convert_hf_to_gguf.py, or pick another "
            "--quant-method",
        )
    act = str(getattr(config, "hidden_act", "silu"))
    if act not in ("silu", "swish"):
        raise MartletError(
            f"cannot write a Llama model with the {act!r} activation as GGUF",
            why="llama.cpp's llama graph uses SiLU (SwiGLU) in every MLP",
            fix="export a model with hidden_act 'silu'",
        )
    rope_scaling(config)  # refuses a scaling llama.cpp's llama graph cannot reproduce
    heads = int(config.num_attention_heads)
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    inputs, outputs = model.get_input_embeddings(), model.get_output_embeddings()
    return ModelShape(
        vocab_size=int(inputs.weight.shape[0]),
        hidden=int(config.hidden_size),
        layers=int(config.num_hidden_layers),
        ffn=int(config.intermediate_size),
        heads=heads,
        kv_heads=int(getattr(config, "num_key_value_heads", None) or heads),
        head_dim=int(head_dim),
        context=int(config.max_position_embeddings),
        eps=float(config.rms_norm_eps),
        tied=outputs.weight.data_ptr() == inputs.weight.data_ptr(),
    )


def rope_scaling(config: Any) -> tuple[float, dict[str, Any]]:
    """``(rope_theta, scaling)`` of ``config``: ``scaling`` is ``{}`` without scaling, else
    the rope parameters with ``rope_type`` ``linear`` or ``llama3`` (transformers 5 keeps
    them in ``rope_parameters``, earlier versions in ``rope_theta`` and ``rope_scaling``).

    Raises:
        MartletError: another scaling (yarn, dynamic, longrope): llama.cpp's llama graph
            would run the model differently.
    """
    params = dict(getattr(config, "rope_parameters", None) or {})
    legacy = getattr(config, "rope_scaling", None)
    if isinstance(legacy, dict):
        params = {**legacy, **params}
    theta = float(params.get("rope_theta", getattr(config, "rope_theta", None) or 10000.0))
    kind = str(params.get("rope_type", params.get("type", "default")) or "default")
    if kind == "default":
        return theta, {}
    if kind not in ("linear", "llama3"):
        raise MartletError(
            f"cannot write a model with {kind!r} RoPE scaling as GGUF",
            why="the gguf exporter writes the default, linear and llama3 RoPE of llama.cpp's "
            "llama architecture",
            fix="export this model with llama.cpp's convert_hf_to_gguf.py",
        )
    return theta, {**params, "rope_type": kind}


def llama3_rope_factors(config: Any, head_dim: int) -> np.ndarray:
    """The per-frequency divisors of Llama 3.1's RoPE scaling, as llama.cpp reads them from
    the ``rope_freqs`` tensor (what ``convert_hf_to_gguf.py`` computes)."""
    theta, scaling = rope_scaling(config)
    freqs = 1.0 / (theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
    factor = float(scaling.get("factor", 8.0))
    low = float(scaling.get("low_freq_factor", 1.0))
    high = float(scaling.get("high_freq_factor", 4.0))
    old_context = float(scaling.get("original_max_position_embeddings", 8192))
    low_wavelen, high_wavelen = old_context / low, old_context / high
    out = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < high_wavelen:
            out.append(1.0)
        elif wavelen > low_wavelen:
            out.append(factor)
        else:
            smooth = (old_context / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.asarray(out, dtype=np.float32)


def add_model_info(writer: Any, model: Any, shape: ModelShape, file_type: Any) -> None:
    """The ``general.*`` and ``llama.*`` keys llama.cpp (and transformers' GGUF loader) read."""
    config = model.config
    writer.add_type("model")
    writer.add_name(model_name(model))
    writer.add_context_length(shape.context)
    writer.add_embedding_length(shape.hidden)
    writer.add_block_count(shape.layers)
    writer.add_feed_forward_length(shape.ffn)
    writer.add_head_count(shape.heads)
    writer.add_head_count_kv(shape.kv_heads)
    theta, scaling = rope_scaling(config)
    writer.add_rope_freq_base(theta)
    writer.add_rope_dimension_count(shape.head_dim)
    if shape.head_dim != shape.hidden // shape.heads:
        writer.add_key_length(shape.head_dim)
        writer.add_value_length(shape.head_dim)
    if scaling.get("rope_type") == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(scaling["factor"]))
    writer.add_layer_norm_rms_eps(shape.eps)
    writer.add_vocab_size(shape.vocab_size)
    writer.add_file_type(file_type)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def model_name(model: Any) -> str:
    """The model's name for ``general.name``: the one a GGUF it came from recorded, else the
    last part of its id or folder (martlet-hf recognises the family by it)."""
    config = model.config
    name = getattr(config, "_model_name_or_path", None) or getattr(config, "_name_or_path", "")
    return Path(str(name)).name or "model"


# ---------------------------------------------------------------------- the tensors


@dataclass
class PlannedTensor:
    """One tensor of the file: its GGUF name and type, and how to make its bytes."""

    name: str
    qtype: Any
    shape: tuple[int, ...]
    source: Any  # a torch tensor, or a numpy array
    permute_heads: int = 0  # q/k: the heads to permute over (0: none)

    @property
    def byte_shape(self) -> tuple[int, ...]:
        return gguf.quant_shape_to_byte_shape(self.shape, self.qtype)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.byte_shape))

    def encode(self) -> np.ndarray:
        """The tensor as float32, permuted if q/k, in its GGUF type (as stored)."""
        data = self.source
        if not isinstance(data, np.ndarray):
            import torch

            data = data.detach().to(device="cpu", dtype=torch.float32).numpy()
        data = np.ascontiguousarray(data, dtype=np.float32)
        if self.permute_heads:
            data = permute_rotary(data, self.permute_heads)
        out = gguf.quantize(data, self.qtype)
        assert out.nbytes == self.nbytes, (self.name, out.nbytes, self.nbytes)
        return out


def plan_tensors(model: Any, shape: ModelShape, qtype: Any) -> Iterator[PlannedTensor]:
    """The file's tensors in state-dict order, named, typed and sized (no data converted).

    Raises:
        MartletError: a weight with no GGUF name in the llama architecture (a model llama.cpp
            would not run as written).
    """
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, shape.layers)
    _, scaling = rope_scaling(model.config)
    if scaling.get("rope_type") == "llama3":
        factors = llama3_rope_factors(model.config, shape.head_dim)
        yield PlannedTensor("rope_freqs.weight", F32, factors.shape, factors)
    for hf_name, tensor in model.state_dict().items():
        if shape.tied and hf_name == "lm_head.weight":
            continue  # tied: llama.cpp reuses token_embd (no `output` tensor)
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise MartletError(
                f"the model's weight {hf_name!r} has no place in a llama GGUF file",
                why="llama.cpp's llama architecture has no such tensor, so it would not run "
                "the model as trained",
                fix="export a plain LlamaForCausalLM (merge adapters with --merge-lora)",
            )
        dims = tuple(int(d) for d in tensor.shape)
        heads = 0
        if name.startswith("blk.") and ".attn_q." in name:
            heads = shape.heads
        elif name.startswith("blk.") and ".attn_k." in name:
            heads = shape.kv_heads
        yield PlannedTensor(name, storage_type(name, dims, qtype), dims, tensor, heads)


def storage_type(name: str, shape: tuple[int, ...], wanted: Any) -> Any:
    """The type a tensor is stored in: f32 for norms and other 1-D tensors; ``wanted`` for
    2-D weights whose rows split into its blocks, f16 for those whose rows do not (as
    llama.cpp's converter falls back)."""
    if len(shape) < 2 or name.endswith("_norm.weight"):
        return F32
    block, _ = gguf.GGML_QUANT_SIZES[wanted]
    if shape[-1] % block:
        return gguf.GGMLQuantizationType.F16
    return wanted


def permute_rotary(weights: np.ndarray, heads: int) -> np.ndarray:
    """Reorder the rows of a q or k projection (or its bias) from transformers' rotary layout
    (each head's halves: first all real parts, then all imaginary) to llama.cpp's (pairs
    interleaved). Exactly undone by transformers' GGUF loader (``_reverse_permute_weights``)."""
    rows = weights.shape[0]
    return (
        weights.reshape(heads, 2, rows // heads // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


# ---------------------------------------------------------------------- the tokenizer


@dataclass
class Vocab:
    """A byte-level BPE tokenizer as GGUF metadata."""

    tokens: list[str]
    types: list[int]
    merges: list[str]
    pre: str
    special: dict[str, int]  # bos, eos, unk, pad -> id
    add_bos: bool
    add_eos: bool
    chat_template: Any


def read_vocab(tokenizer: Any, vocab_size: int) -> Vocab:
    """``tokenizer`` (a fast, byte-level BPE one) as GGUF metadata for ``vocab_size`` rows of
    embeddings: ids the tokenizer does not use become unused ``[PADn]`` tokens.

    Raises:
        MartletError: the tokenizer is not byte-level BPE, or it has more tokens than the
            model has embeddings.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    spec = json.loads(backend.to_str()) if backend is not None else {}
    if (spec.get("model") or {}).get("type") != "BPE" or not _byte_level(spec):
        raise MartletError(
            "cannot write this tokenizer as GGUF",
            why="the gguf exporter writes byte-level BPE tokenizers (GPT-2, Llama 3, SmolLM, "
            "Qwen style); this one is "
            + ((spec.get("model") or {}).get("type") or type(tokenizer).__name__),
            fix="export this model with llama.cpp's convert_hf_to_gguf.py",
        )
    tokens, types = _tokens(tokenizer, vocab_size)
    special = {
        key: int(value)
        for key in ("bos", "eos", "unk", "pad")
        if (value := getattr(tokenizer, f"{key}_token_id", None)) is not None
    }
    probe = tokenizer("a", add_special_tokens=True)["input_ids"]
    return Vocab(
        tokens=tokens,
        types=types,
        merges=_merges(spec),
        pre=pre_tokenizer_name(spec.get("pre_tokenizer")),
        special=special,
        add_bos="bos" in special and probe[:1] == [special["bos"]],
        add_eos="eos" in special and probe[-1:] == [special["eos"]],
        chat_template=getattr(tokenizer, "chat_template", None),
    )


def _tokens(tokenizer: Any, vocab_size: int) -> tuple[list[str], list[int]]:
    """Every id's token and GGUF token type: added special tokens are control tokens, other
    added tokens user-defined, the rest normal; ids with no token are unused padding."""
    by_id = {i: t for t, i in tokenizer.get_vocab().items()}
    if by_id and max(by_id) >= vocab_size:
        raise MartletError(
            f"the tokenizer has ids up to {max(by_id)}, but the model has {vocab_size} "
            "token embeddings",
            why="a GGUF file's vocabulary is the model's embedding rows",
            fix="resize the model's token embeddings to the tokenizer "
            "(model.resize_token_embeddings(len(tokenizer))) and train them",
        )
    added = tokenizer.added_tokens_decoder
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif i in added:
            tokens.append(added[i].content)
            special = added[i].special
            types.append(gguf.TokenType.CONTROL if special else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.NORMAL)
    return tokens, [int(t) for t in types]


def _byte_level(spec: dict[str, Any]) -> bool:
    """Whether a tokenizer.json spec decodes bytes (a ByteLevel pre-tokenizer or decoder)."""
    parts = [spec.get("pre_tokenizer") or {}, spec.get("decoder") or {}]
    parts += (spec.get("pre_tokenizer") or {}).get("pretokenizers") or []
    parts += (spec.get("decoder") or {}).get("decoders") or []
    return any(p.get("type") == "ByteLevel" for p in parts)


def _merges(spec: dict[str, Any]) -> list[str]:
    """The BPE merges as ``"a b"`` strings (tokenizers writes pairs since 0.20)."""
    merges = spec["model"].get("merges") or []
    return [m if isinstance(m, str) else " ".join(m) for m in merges]


def pre_tokenizer_name(pre: dict[str, Any] | None) -> str:
    """llama.cpp's name (``tokenizer.ggml.pre``) for the way ``pre`` (a tokenizer.json
    pre-tokenizer) splits text before the merges: ``gpt-2`` for the plain byte-level one,
    ``llama-bpe`` and ``tekken`` for their regexes, ``smollm`` for single digits then
    GPT-2; ``default`` (with a warning) for others."""
    pre = pre or {}
    parts = pre.get("pretokenizers") if pre.get("type") == "Sequence" else [pre]
    parts = parts or []
    kinds = [p.get("type") for p in parts]
    if kinds == ["ByteLevel"] and parts[0].get("use_regex", True):
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and parts[0].get("individual_digits"):
        return "smollm"
    if kinds == ["Split", "ByteLevel"] and not parts[1].get("use_regex", True):
        name = SPLIT_NAMES.get((parts[0].get("pattern") or {}).get("Regex", ""))
        if name:
            return name
    print(
        "martlet: the tokenizer's pre-tokenizer is not one llama.cpp names; the GGUF says "
        "'default', which llama.cpp splits like GPT-2 (check the tokens it makes)",
        file=sys.stderr,
    )
    return "default"


def add_vocab(writer: Any, vocab: Vocab) -> None:
    """The ``tokenizer.*`` keys: a ``gpt2`` (byte-level BPE) vocabulary, merges, special ids,
    BOS/EOS flags and the chat template."""
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(vocab.pre)
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.types)
    writer.add_token_merges(vocab.merges)
    adders = {
        "bos": writer.add_bos_token_id,
        "eos": writer.add_eos_token_id,
        "unk": writer.add_unk_token_id,
        "pad": writer.add_pad_token_id,
    }
    for key, token_id in vocab.special.items():
        adders[key](token_id)
    writer.add_add_bos_token(vocab.add_bos)
    writer.add_add_eos_token(vocab.add_eos)
    template = vocab.chat_template
    if isinstance(template, dict):  # named templates: {"default": ..., "tool_use": ...}
        template = [{"name": k, "template": v} for k, v in template.items()]
    if template:
        writer.add_chat_template(template)
