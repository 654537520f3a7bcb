"""Megatron-Core's ``GPTModel`` for a Llama-family Hugging Face config (imports megatron.core:
call only where it is installed and ``parallel_state`` is initialised)."""

from __future__ import annotations

from typing import Any

from martlet.errors import ConfigError

from martlet_megatron.families import Shape, shape_of


def have_transformer_engine() -> bool:
    try:
        import transformer_engine  # noqa: F401
    except Exception:  # noqa: BLE001 - any failure to import means: not usable here
        return False
    return True


def rope_settings(hf: dict[str, Any]) -> dict[str, Any]:
    """``GPTModel``'s rotary arguments for a HF config: the base, and Llama 3.1's scaling
    (Megatron-Core implements that one kind, with its default factors)."""
    params = dict(hf.get("rope_parameters") or {})
    scaling = dict(hf.get("rope_scaling") or {})
    kind = scaling.get("rope_type") or scaling.get("type") or params.get("rope_type") or "default"
    base = params.get("rope_theta") or hf.get("rope_theta") or 10000.0
    out: dict[str, Any] = {"rotary_base": int(base)}
    if kind in ("default", None):
        return out
    settings = {**params, **scaling}
    if kind == "llama3" and (
        float(settings.get("low_freq_factor", 1.0)) == 1.0
        and float(settings.get("high_freq_factor", 4.0)) == 4.0
        and int(settings.get("original_max_position_embeddings", 8192)) == 8192
    ):
        out.update(rope_scaling=True, rope_scaling_factor=float(settings.get("factor", 8.0)))
        return out
    raise ConfigError(
        f"rotary scaling {kind!r} with these settings is not built for Megatron-Core here",
        why="Megatron-Core's GPTModel scales rotary embeddings the Llama 3.1 way only "
        "(factor, low 1, high 4, original 8192)",
        fix="use --parallel fsdp or deepspeed for this model",
    )


def transformer_config(
    hf: dict[str, Any],
    *,
    tp: int = 1,
    pp: int = 1,
    cp: int = 1,
    sequence_parallel: bool = False,
    params_dtype: Any = None,
    use_cpu_initialization: bool = False,
) -> Any:
    """Megatron-Core's ``TransformerConfig`` for the HF config ``hf`` (a dict)."""
    import torch
    from megatron.core.transformer.transformer_config import TransformerConfig

    shape = shape_of(hf)
    kwargs: dict[str, Any] = dict(
        num_layers=shape.num_layers,
        hidden_size=shape.hidden_size,
        ffn_hidden_size=shape.ffn_hidden_size,
        num_attention_heads=shape.num_heads,
        num_query_groups=shape.num_query_groups,
        kv_channels=shape.head_dim,
        normalization="RMSNorm",
        layernorm_epsilon=float(hf.get("rms_norm_eps") or 1e-6),
        gated_linear_unit=True,
        activation_func=torch.nn.functional.silu,
        add_bias_linear=False,
        add_qkv_bias=shape.qkv_bias,
        hidden_dropout=0.0,
        attention_dropout=float(hf.get("attention_dropout") or 0.0),
        bias_activation_fusion=False,
        bias_dropout_fusion=False,
        masked_softmax_fusion=False,
        apply_rope_fusion=False,
        persist_layer_norm=False,
        gradient_accumulation_fusion=False,
        tensor_model_parallel_size=tp,
        pipeline_model_parallel_size=pp,
        context_parallel_size=cp,
        sequence_parallel=sequence_parallel,
        params_dtype=params_dtype or torch.float32,
        use_cpu_initialization=use_cpu_initialization,
        # the converted weights are loaded over the initial ones, but Megatron-Core marks its
        # parameters as tensor parallel (``tensor_model_parallel``, which gradient norms and
        # optimizers read) only while initialising them
        perform_initialization=True,
    )
    window = hf.get("sliding_window") if hf.get("use_sliding_window", True) else None
    longest = int(hf.get("max_position_embeddings") or 0)
    if window and shape.model_type == "mistral" and int(window) < longest:
        # a window shorter than the longest sequence changes the attention (a longer one
        # does not): Transformer Engine's attention takes it as (left, right) tokens
        kwargs["window_size"] = (int(window) - 1, 0)
    return TransformerConfig(**kwargs)


def layer_spec(shape: Shape, transformer_engine: bool | None = None) -> tuple[Any, str]:
    """The layer spec (Transformer Engine's where installed, else Megatron-Core's local
    layers) and the matching weight layout for :mod:`martlet_megatron.convert`."""
    from megatron.core.models.gpt import gpt_layer_specs as specs

    use_te = have_transformer_engine() if transformer_engine is None else transformer_engine
    if use_te:
        return specs.get_gpt_layer_with_transformer_engine_spec(), "te"
    return specs.get_gpt_layer_local_spec(normalization="RMSNorm"), "local"


def build_gpt(
    hf: dict[str, Any],
    *,
    tp: int = 1,
    pp: int = 1,
    cp: int = 1,
    sequence_parallel: bool = False,
    pre_process: bool = True,
    post_process: bool = True,
    divisible_by: int = 128,
    transformer_engine: bool | None = None,
    parallel_output: bool = False,
    params_dtype: Any = None,
    use_cpu_initialization: bool = False,
) -> tuple[Any, str]:
    """``(GPTModel, layout)`` for this stage of the HF model ``hf`` (its ``config.json``
    as a dict). ``parallel_output=False``: the logits are gathered over the tensor parallel
    ranks (every rank sees the whole vocabulary, padding cut off by the caller)."""
    from megatron.core.models.gpt import GPTModel

    shape = shape_of(hf)
    config = transformer_config(
        hf,
        tp=tp,
        pp=pp,
        cp=cp,
        sequence_parallel=sequence_parallel,
        params_dtype=params_dtype,
        use_cpu_initialization=use_cpu_initialization,
    )
    spec, layout = layer_spec(shape, transformer_engine)
    model = GPTModel(
        config=config,
        transformer_layer_spec=spec,
        vocab_size=shape.padded_vocab(tp, divisible_by),
        max_sequence_length=int(hf.get("max_position_embeddings") or 4096),
        pre_process=pre_process,
        post_process=post_process,
        parallel_output=parallel_output,
        share_embeddings_and_output_weights=shape.tied,
        position_embedding_type="rope",
        **rope_settings(hf),
    )
    return model, layout


def load_converted(model: Any, state: dict[str, Any]) -> None:
    """Load a converted state dict (this rank's) into a built ``GPTModel``: every parameter
    must be given; module extra state (Transformer Engine's FP8 metadata) is kept as built."""
    own = model.state_dict()
    state = {k: v for k, v in state.items() if not k.endswith("_extra_state")}
    missing = [k for k in own if k not in state and not k.endswith("_extra_state")]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise RuntimeError(
            f"converted weights do not match Megatron-Core's GPTModel: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    merged = {k: v for k, v in own.items() if k.endswith("_extra_state")}
    for name, tensor in state.items():
        if tuple(own[name].shape) != tuple(tensor.shape):
            raise RuntimeError(
                f"{name}: converted shape {tuple(tensor.shape)}, GPTModel expects "
                f"{tuple(own[name].shape)}"
            )
        merged[name] = tensor
    model.load_state_dict(merged, strict=True)
