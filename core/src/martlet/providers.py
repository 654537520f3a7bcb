"""Which distribution provides a name that is not installed.

Used only to answer "unknown tuner 'lora'" with "pip install martlet-peft". It lists the names
the in-repo plugins register (and those planned for packages not written yet); third-party
plugins need not appear here. A test checks it agrees with the installed in-repo plugins.
"""

from __future__ import annotations

PROVIDERS: dict[str, dict[str, str]] = {
    "commands": {
        "plugin": "martlet-plugin-sdk",
        "model": "martlet-hf",
        "download": "martlet-hf",
        "dataset": "martlet-data",
        "sft": "martlet-train",
        "pt": "martlet-train",
        "rlhf": "martlet-train",
        "infer": "martlet-serve",
        "deploy": "martlet-serve",
        "export": "martlet-export",
        "eval": "martlet-eval",
        "web-ui": "martlet-webui",
        "megatron": "martlet-megatron",
    },
    "models": {"smollm2-135m-instruct": "martlet-hf"},
    "model_loaders": {"hf": "martlet-hf", "gguf": "martlet-hf"},
    "dataset_sources": {name: "martlet-data" for name in ("local", "hf", "modelscope", "named")},
    "templates": {
        name: "martlet-hf"
        for name in (
            "auto chatml qwen qwen2 qwen3 llama2 llama3 mistral alpaca gemma phi3 phi4 "
            "deepseek-r1 glm4 internlm2"
        ).split()
    },
    "callbacks": {"tensorboard": "martlet-train", "wandb": "martlet-wandb"},
    "kernels": {
        name: "martlet-kernels"
        for name in (
            "rms-norm swiglu-mlp fused-lora lora-dropout linear-cross-entropy packed-attention "
            "liger"
        ).split()
    },
    "rewards": {
        name: "martlet-rewards"
        for name in (
            "accuracy format cosine repetition soft-overlong reward-model rm http remote"
        ).split()
    },
    "accelerators": {
        "cpu": "martlet-accel",
        "cuda": "martlet-accel",
        "mps": "martlet-accel",
        "xpu": "martlet-accel",
        "npu": "martlet-npu",
    },
    "tuners": {
        name: "martlet-peft"
        for name in (
            "lora adalora ia3 vera boft loha lokr prompt-tuning prefix-tuning full freeze "
            "galore lisa llamapro reft"
        ).split()
    },
    "losses": {
        "sft": "martlet-train",
        **{n: "martlet-align" for n in "dpo kto simpo orpo cpo rm gkd".split()},
    },
    "parallel_strategies": {
        "ddp": "martlet-dist",
        "fsdp": "martlet-dist",
        "deepspeed": "martlet-deepspeed",
        "megatron": "martlet-megatron",
    },
    "quantizers": {
        "bnb": "martlet-bnb",
        "hqq": "martlet-hqq",
        "quanto": "martlet-quanto",
        "gptq": "martlet-gptq",
        "awq": "martlet-awq",
        "eetq": "martlet-eetq",
        "aqlm": "martlet-aqlm",
        "gguf": "martlet-gguf",
    },
    "inference_backends": {
        "pt": "martlet-engine-pt",
        "vllm": "martlet-vllm",
        "sglang": "martlet-sglang",
        "lmdeploy": "martlet-lmdeploy",
    },
}


#: options no installed record or command declares, where they live: option name ->
#: (distribution, what takes it). ``martlet.config`` answers such a flag with this (and
#: ``pip install`` when the distribution is missing) instead of "unknown option"; a command
#: that does declare the option never gets here. Data, not code: a later plugin family adds
#: its row here, not to another plugin.
OPTIONS: dict[str, tuple[str, str]] = {
    **{
        name: ("martlet-align", "`martlet rlhf` (its preference and distillation losses)")
        for name in ("method", "rlhf_type", "beta", "reference_free", "ref_model")
    },
    "deepspeed": ("martlet-deepspeed", "the deepspeed parallel strategy"),
    "deepspeed_config": ("martlet-deepspeed", "the deepspeed parallel strategy"),
    "fsdp": ("martlet-dist", "the fsdp parallel strategy"),
    "fsdp_config": ("martlet-dist", "the fsdp parallel strategy"),
    "parallel": ("martlet-dist", "the parallel strategies (ddp, fsdp)"),
    "parallel_strategy": ("martlet-dist", "the parallel strategies (ddp, fsdp)"),
    **{
        name: ("martlet-train", "`martlet rlhf --method grpo` (online RL with reward functions)")
        for name in ("reward_funcs", "reward_weights")
    },
    **{
        name: ("martlet-megatron", "the megatron parallel strategy")
        for name in (
            "tensor_model_parallel_size",
            "pipeline_model_parallel_size",
            "context_parallel_size",
            "sequence_parallel",
        )
    },
    "use_npu": ("martlet-npu", "the Ascend NPU accelerator (--device npu)"),
    "eval_dataset": ("martlet-eval", "`martlet eval`"),
    "infer_backend": ("martlet-serve", "`martlet infer` and `martlet deploy`"),
    "quant_method": (
        "martlet-export",
        "`martlet export` (and, as the model loads, `sft`, `pt`, `rlhf`, `infer`, `deploy`)",
    ),
}


#: the entry-point group through which an installed distribution adds rows to the index of
#: known options: ``NAME = "module:TABLE"``, ``TABLE`` a mapping like :data:`OPTIONS` (say, a
#: catalog of a vendor's plugins, or a plugin naming the options of its optional companions)
KNOWN_OPTIONS_GROUP = "martlet.known_options"


def known_option(name: str) -> tuple[str, str] | None:
    """``(distribution, what takes it)`` for an option of :data:`OPTIONS`, or of a table an
    installed distribution declares in :data:`KNOWN_OPTIONS_GROUP` (any spelling)."""
    key = name.strip().lstrip("-").lower().replace("-", "_")
    return OPTIONS.get(key) or _declared_tables().get(key)


def _declared_tables() -> dict[str, tuple[str, str]]:
    """The rows installed distributions add (read when an option is unknown: errors only). A
    table that fails to load or is malformed is passed over: this only improves a message."""
    from importlib import metadata

    rows: dict[str, tuple[str, str]] = {}
    for entry in metadata.entry_points(group=KNOWN_OPTIONS_GROUP):
        try:
            table = dict(entry.load())
        except Exception:  # noqa: BLE001 - a broken table must not hide the real error
            continue
        for option, row in table.items():
            if isinstance(row, (tuple, list)) and len(row) == 2:
                rows.setdefault(str(option).lower().replace("-", "_"), (str(row[0]), str(row[1])))
    return rows


def installed(distribution: str) -> bool:
    """Whether ``distribution`` is installed (from its metadata; nothing imported)."""
    from importlib import metadata

    try:
        metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return False
    return True


def provider(kind: str, name: str) -> str | None:
    """The distribution known to provide ``name`` in ``kind``, if any."""
    from martlet.records import normalize

    return PROVIDERS.get(kind, {}).get(normalize(name))
