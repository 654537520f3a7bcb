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
    },
    "inference_backends": {
        "pt": "martlet-engine-pt",
        "vllm": "martlet-vllm",
        "sglang": "martlet-sglang",
        "lmdeploy": "martlet-lmdeploy",
    },
}


def provider(kind: str, name: str) -> str | None:
    """The distribution known to provide ``name`` in ``kind``, if any."""
    from martlet.records import normalize

    return PROVIDERS.get(kind, {}).get(normalize(name))
