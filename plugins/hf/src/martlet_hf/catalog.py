"""The model registry as plain data: families and the model ids users can name.

Imported by the plugin module to yield :class:`~martlet.records.ModelRecord` objects, so it holds
nothing but literals (no imports beyond the standard library).

Hub ids are the repositories' names on Hugging Face and on ModelScope; an empty ModelScope id
means the model has no ModelScope copy we vouch for.
"""

from __future__ import annotations

from typing import NamedTuple


class Family(NamedTuple):
    """A model family: how its members are chatted with and recognised on disk."""

    template: str  # the registered template used when a tokenizer ships none
    model_types: tuple[str, ...]  # config.json `model_type` values of the family
    summary: str


class Model(NamedTuple):
    """One registered model id."""

    name: str
    family: str
    size: str
    hf: str
    ms: str = ""
    modality: str = "text"
    template: str = ""  # empty: the family's template
    aliases: tuple[str, ...] = ()


FAMILIES: dict[str, Family] = {
    "llama2": Family("llama2", ("llama",), "Meta Llama 2"),
    "llama3": Family("llama3", ("llama",), "Meta Llama 3"),
    "llama3.1": Family("llama3", ("llama",), "Meta Llama 3.1"),
    "llama3.2": Family("llama3", ("llama", "mllama"), "Meta Llama 3.2 (text and vision)"),
    "llama3.3": Family("llama3", ("llama",), "Meta Llama 3.3"),
    "qwen2": Family("qwen2", ("qwen2",), "Alibaba Qwen2"),
    "qwen2.5": Family("qwen", ("qwen2",), "Alibaba Qwen2.5 (incl. Coder)"),
    "qwen3": Family("qwen3", ("qwen3", "qwen3_moe"), "Alibaba Qwen3 (dense and MoE)"),
    "mistral": Family("mistral", ("mistral",), "Mistral AI Mistral 7B, Nemo and Small"),
    "gemma2": Family("gemma", ("gemma2",), "Google Gemma 2"),
    "gemma3": Family("gemma", ("gemma3", "gemma3_text"), "Google Gemma 3"),
    "phi3": Family("phi3", ("phi3",), "Microsoft Phi-3 and Phi-3.5"),
    "phi4": Family("phi4", ("phi3",), "Microsoft Phi-4"),
    "smollm2": Family("chatml", ("llama",), "Hugging Face SmolLM2"),
    "deepseek-r1-distill": Family(
        "deepseek-r1", ("qwen2", "llama"), "DeepSeek-R1 reasoning distilled into Qwen2.5 and Llama"
    ),
    "glm4": Family("glm4", ("chatglm", "glm4", "glm"), "Zhipu GLM-4"),
    "internlm2": Family("internlm2", ("internlm2",), "Shanghai AI Lab InternLM2 and 2.5"),
    "internlm3": Family("internlm2", ("internlm3",), "Shanghai AI Lab InternLM3"),
    "yi": Family("chatml", ("llama",), "01.AI Yi and Yi-1.5"),
}

_LLAMA2 = [
    Model("llama2-7b", "llama2", "7B", "meta-llama/Llama-2-7b-hf", "modelscope/Llama-2-7b-ms"),
    Model("llama2-13b", "llama2", "13B", "meta-llama/Llama-2-13b-hf", "modelscope/Llama-2-13b-ms"),
    Model("llama2-70b", "llama2", "70B", "meta-llama/Llama-2-70b-hf", "modelscope/Llama-2-70b-ms"),
    Model(
        "llama2-7b-chat",
        "llama2",
        "7B",
        "meta-llama/Llama-2-7b-chat-hf",
        "modelscope/Llama-2-7b-chat-ms",
    ),
    Model(
        "llama2-13b-chat",
        "llama2",
        "13B",
        "meta-llama/Llama-2-13b-chat-hf",
        "modelscope/Llama-2-13b-chat-ms",
    ),
    Model(
        "llama2-70b-chat",
        "llama2",
        "70B",
        "meta-llama/Llama-2-70b-chat-hf",
        "modelscope/Llama-2-70b-chat-ms",
    ),
]

_LLAMA3 = [
    Model(
        "llama3-8b", "llama3", "8B", "meta-llama/Meta-Llama-3-8B", "LLM-Research/Meta-Llama-3-8B"
    ),
    Model(
        "llama3-70b",
        "llama3",
        "70B",
        "meta-llama/Meta-Llama-3-70B",
        "LLM-Research/Meta-Llama-3-70B",
    ),
    Model(
        "llama3-8b-instruct",
        "llama3",
        "8B",
        "meta-llama/Meta-Llama-3-8B-Instruct",
        "LLM-Research/Meta-Llama-3-8B-Instruct",
    ),
    Model(
        "llama3-70b-instruct",
        "llama3",
        "70B",
        "meta-llama/Meta-Llama-3-70B-Instruct",
        "LLM-Research/Meta-Llama-3-70B-Instruct",
    ),
    Model(
        "llama3.1-8b", "llama3.1", "8B", "meta-llama/Llama-3.1-8B", "LLM-Research/Meta-Llama-3.1-8B"
    ),
    Model(
        "llama3.1-70b",
        "llama3.1",
        "70B",
        "meta-llama/Llama-3.1-70B",
        "LLM-Research/Meta-Llama-3.1-70B",
    ),
    Model(
        "llama3.1-8b-instruct",
        "llama3.1",
        "8B",
        "meta-llama/Llama-3.1-8B-Instruct",
        "LLM-Research/Meta-Llama-3.1-8B-Instruct",
    ),
    Model(
        "llama3.1-70b-instruct",
        "llama3.1",
        "70B",
        "meta-llama/Llama-3.1-70B-Instruct",
        "LLM-Research/Meta-Llama-3.1-70B-Instruct",
    ),
    Model(
        "llama3.1-405b-instruct",
        "llama3.1",
        "405B",
        "meta-llama/Llama-3.1-405B-Instruct",
        "LLM-Research/Meta-Llama-3.1-405B-Instruct",
    ),
    Model("llama3.2-1b", "llama3.2", "1B", "meta-llama/Llama-3.2-1B", "LLM-Research/Llama-3.2-1B"),
    Model("llama3.2-3b", "llama3.2", "3B", "meta-llama/Llama-3.2-3B", "LLM-Research/Llama-3.2-3B"),
    Model(
        "llama3.2-1b-instruct",
        "llama3.2",
        "1B",
        "meta-llama/Llama-3.2-1B-Instruct",
        "LLM-Research/Llama-3.2-1B-Instruct",
    ),
    Model(
        "llama3.2-3b-instruct",
        "llama3.2",
        "3B",
        "meta-llama/Llama-3.2-3B-Instruct",
        "LLM-Research/Llama-3.2-3B-Instruct",
    ),
    Model(
        "llama3.2-11b-vision-instruct",
        "llama3.2",
        "11B",
        "meta-llama/Llama-3.2-11B-Vision-Instruct",
        "LLM-Research/Llama-3.2-11B-Vision-Instruct",
        modality="vision",
    ),
    Model(
        "llama3.2-90b-vision-instruct",
        "llama3.2",
        "90B",
        "meta-llama/Llama-3.2-90B-Vision-Instruct",
        "LLM-Research/Llama-3.2-90B-Vision-Instruct",
        modality="vision",
    ),
    Model(
        "llama3.3-70b-instruct",
        "llama3.3",
        "70B",
        "meta-llama/Llama-3.3-70B-Instruct",
        "LLM-Research/Llama-3.3-70B-Instruct",
    ),
]


def _qwen(family: str, prefix: str, sizes: str, instruct: bool = True, base: bool = True):
    """Qwen repositories share one naming scheme and the same ids on both hubs."""
    out = []
    for size in sizes.split():
        stem = f"{prefix}-{size}"
        lower = stem.lower()
        if base:
            suffix = "-Base" if family == "qwen3" else ""
            out.append(Model(f"{lower}{suffix.lower()}", family, size, f"Qwen/{stem}{suffix}", ""))
        if instruct:
            tail = "" if family == "qwen3" else "-Instruct"
            out.append(Model(f"{lower}{tail.lower()}", family, size, f"Qwen/{stem}{tail}", ""))
    return [m._replace(ms=m.hf) for m in out]


_QWEN = [
    *_qwen("qwen2", "Qwen2", "0.5B 1.5B 7B 72B"),
    *_qwen("qwen2.5", "Qwen2.5", "0.5B 1.5B 3B 7B 14B 32B 72B"),
    *_qwen("qwen2.5", "Qwen2.5-Coder", "0.5B 1.5B 3B 7B 14B 32B", base=False),
    *_qwen("qwen3", "Qwen3", "0.6B 1.7B 4B 8B 14B"),
    *_qwen("qwen3", "Qwen3", "32B 30B-A3B 235B-A22B", base=False),
]

_MISTRAL = [
    Model(
        "mistral-7b", "mistral", "7B", "mistralai/Mistral-7B-v0.1", "AI-ModelScope/Mistral-7B-v0.1"
    ),
    Model(
        "mistral-7b-instruct-v0.1",
        "mistral",
        "7B",
        "mistralai/Mistral-7B-Instruct-v0.1",
        "AI-ModelScope/Mistral-7B-Instruct-v0.1",
    ),
    Model(
        "mistral-7b-instruct-v0.2",
        "mistral",
        "7B",
        "mistralai/Mistral-7B-Instruct-v0.2",
        "AI-ModelScope/Mistral-7B-Instruct-v0.2",
    ),
    Model(
        "mistral-7b-instruct-v0.3",
        "mistral",
        "7B",
        "mistralai/Mistral-7B-Instruct-v0.3",
        "LLM-Research/Mistral-7B-Instruct-v0.3",
        aliases=("mistral-7b-instruct",),
    ),
    Model(
        "mistral-nemo-instruct-2407",
        "mistral",
        "12B",
        "mistralai/Mistral-Nemo-Instruct-2407",
        "AI-ModelScope/Mistral-Nemo-Instruct-2407",
    ),
    Model(
        "mistral-small-24b-instruct-2501",
        "mistral",
        "24B",
        "mistralai/Mistral-Small-24B-Instruct-2501",
        "mistralai/Mistral-Small-24B-Instruct-2501",
    ),
]


def _gemma(family: str, stem: str, size: str, ms_org: str, modality: str = "text"):
    return [
        Model(f"{stem}", family, size, f"google/{stem}", f"{ms_org}/{stem}", modality),
        Model(f"{stem}-it", family, size, f"google/{stem}-it", f"{ms_org}/{stem}-it", modality),
    ]


_GEMMA = [
    *_gemma("gemma2", "gemma-2-2b", "2B", "LLM-Research"),
    *_gemma("gemma2", "gemma-2-9b", "9B", "LLM-Research"),
    *_gemma("gemma2", "gemma-2-27b", "27B", "LLM-Research"),
    *_gemma("gemma3", "gemma-3-270m", "270M", "google"),
    Model("gemma-3-1b-pt", "gemma3", "1B", "google/gemma-3-1b-pt", "LLM-Research/gemma-3-1b-pt"),
    Model("gemma-3-1b-it", "gemma3", "1B", "google/gemma-3-1b-it", "LLM-Research/gemma-3-1b-it"),
    *[
        Model(
            f"gemma-3-{size.lower()}-{kind}",
            "gemma3",
            size,
            f"google/gemma-3-{size.lower()}-{kind}",
            f"LLM-Research/gemma-3-{size.lower()}-{kind}",
            modality="vision",
        )
        for size in ("4B", "12B", "27B")
        for kind in ("pt", "it")
    ],
]

_PHI = [
    Model(
        "phi-3-mini-4k-instruct",
        "phi3",
        "3.8B",
        "microsoft/Phi-3-mini-4k-instruct",
        "LLM-Research/Phi-3-mini-4k-instruct",
    ),
    Model(
        "phi-3-mini-128k-instruct",
        "phi3",
        "3.8B",
        "microsoft/Phi-3-mini-128k-instruct",
        "LLM-Research/Phi-3-mini-128k-instruct",
    ),
    Model(
        "phi-3-medium-4k-instruct",
        "phi3",
        "14B",
        "microsoft/Phi-3-medium-4k-instruct",
        "LLM-Research/Phi-3-medium-4k-instruct",
    ),
    Model(
        "phi-3-medium-128k-instruct",
        "phi3",
        "14B",
        "microsoft/Phi-3-medium-128k-instruct",
        "LLM-Research/Phi-3-medium-128k-instruct",
    ),
    Model(
        "phi-3.5-mini-instruct",
        "phi3",
        "3.8B",
        "microsoft/Phi-3.5-mini-instruct",
        "LLM-Research/Phi-3.5-mini-instruct",
    ),
    Model("phi-4", "phi4", "14B", "microsoft/phi-4", "LLM-Research/phi-4"),
    Model(
        "phi-4-mini-instruct",
        "phi4",
        "3.8B",
        "microsoft/Phi-4-mini-instruct",
        "LLM-Research/Phi-4-mini-instruct",
        template="phi3",  # Phi-4-mini chats in Phi-3's <|user|> ... <|end|> format
    ),
]

_SMOLLM2 = [
    Model("smollm2-135m", "smollm2", "135M", "HuggingFaceTB/SmolLM2-135M"),
    Model("smollm2-360m", "smollm2", "360M", "HuggingFaceTB/SmolLM2-360M"),
    Model("smollm2-1.7b", "smollm2", "1.7B", "HuggingFaceTB/SmolLM2-1.7B"),
    # smollm2-135m-instruct is the embedded default model, registered in plugin.py
    Model("smollm2-360m-instruct", "smollm2", "360M", "HuggingFaceTB/SmolLM2-360M-Instruct"),
    Model("smollm2-1.7b-instruct", "smollm2", "1.7B", "HuggingFaceTB/SmolLM2-1.7B-Instruct"),
]

_DEEPSEEK = [
    Model(
        f"deepseek-r1-distill-{base.lower()}-{size.lower()}",
        "deepseek-r1-distill",
        size,
        f"deepseek-ai/DeepSeek-R1-Distill-{base}-{size}",
        f"deepseek-ai/DeepSeek-R1-Distill-{base}-{size}",
    )
    for base, size in (
        ("Qwen", "1.5B"),
        ("Qwen", "7B"),
        ("Qwen", "14B"),
        ("Qwen", "32B"),
        ("Llama", "8B"),
        ("Llama", "70B"),
    )
]

_GLM = [
    Model("glm4-9b", "glm4", "9B", "zai-org/glm-4-9b", "ZhipuAI/glm-4-9b"),
    Model("glm4-9b-chat", "glm4", "9B", "zai-org/glm-4-9b-chat", "ZhipuAI/glm-4-9b-chat"),
    Model("glm4-9b-0414", "glm4", "9B", "zai-org/GLM-4-9B-0414", "ZhipuAI/GLM-4-9B-0414"),
    Model("glm4-32b-0414", "glm4", "32B", "zai-org/GLM-4-32B-0414", "ZhipuAI/GLM-4-32B-0414"),
]

_INTERNLM = [
    Model(
        f"internlm2{'.5' if v25 else ''}-{name}",
        "internlm2",
        size,
        f"internlm/{repo}",
        f"Shanghai_AI_Laboratory/{repo}",
    )
    for v25, name, size, repo in (
        (False, "1.8b", "1.8B", "internlm2-1_8b"),
        (False, "chat-1.8b", "1.8B", "internlm2-chat-1_8b"),
        (False, "7b", "7B", "internlm2-7b"),
        (False, "chat-7b", "7B", "internlm2-chat-7b"),
        (False, "20b", "20B", "internlm2-20b"),
        (False, "chat-20b", "20B", "internlm2-chat-20b"),
        (True, "1.8b-chat", "1.8B", "internlm2_5-1_8b-chat"),
        (True, "7b", "7B", "internlm2_5-7b"),
        (True, "7b-chat", "7B", "internlm2_5-7b-chat"),
        (True, "20b-chat", "20B", "internlm2_5-20b-chat"),
    )
] + [
    Model(
        "internlm3-8b-instruct",
        "internlm3",
        "8B",
        "internlm/internlm3-8b-instruct",
        "Shanghai_AI_Laboratory/internlm3-8b-instruct",
    )
]

_YI = [
    Model(name.lower(), "yi", size, f"01-ai/{name}", f"01ai/{name}")
    for name, size in (
        ("Yi-6B", "6B"),
        ("Yi-6B-Chat", "6B"),
        ("Yi-9B", "9B"),
        ("Yi-34B", "34B"),
        ("Yi-34B-Chat", "34B"),
        ("Yi-1.5-6B", "6B"),
        ("Yi-1.5-6B-Chat", "6B"),
        ("Yi-1.5-9B", "9B"),
        ("Yi-1.5-9B-Chat", "9B"),
        ("Yi-1.5-34B", "34B"),
        ("Yi-1.5-34B-Chat", "34B"),
    )
]

MODELS: list[Model] = [
    *_LLAMA2,
    *_LLAMA3,
    *_QWEN,
    *_MISTRAL,
    *_GEMMA,
    *_PHI,
    *_SMOLLM2,
    *_DEEPSEEK,
    *_GLM,
    *_INTERNLM,
    *_YI,
]

#: the embedded default model: no hub needed (see martlet_hf.embedded)
DEFAULT_MODEL = Model(
    "smollm2-135m-instruct",
    "smollm2",
    "135M",
    "HuggingFaceTB/SmolLM2-135M-Instruct",
    aliases=("smollm2",),
)


def template_of(model: Model) -> str:
    """The template a model chats with when its tokenizer ships none."""
    return model.template or FAMILIES[model.family].template
