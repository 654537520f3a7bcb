"""Which family a model on disk belongs to, from its ``config.json`` (or GGUF header).

Light: reads JSON (or a GGUF header) and names; imports no heavy library. Used by
``martlet model info PATH``, by the ``auto`` template to fall back on the family's template when
a tokenizer ships none, and from Python::

    from martlet_hf import match_family
    match_family("/models/my-llama").family   # "llama3.1"
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from martlet.errors import MartletError

from martlet_hf.catalog import DEFAULT_MODEL, FAMILIES, MODELS, template_of


@dataclass(frozen=True)
class FamilyMatch:
    """What a model folder (or GGUF file) was recognised as.

    Attributes:
        family: the family name (a key of :data:`martlet_hf.catalog.FAMILIES`).
        template: the registered template for the family (or the matched model).
        model: the registered model id, when the folder is recognisably one of them.
        model_type: ``model_type`` from ``config.json`` (``general.architecture`` for GGUF).
        architectures: ``architectures`` from ``config.json``.
        reason: how it was decided, in words.
    """

    family: str
    template: str
    model: str | None
    model_type: str
    architectures: tuple[str, ...]
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "template": self.template,
            "model": self.model,
            "model_type": self.model_type,
            "architectures": list(self.architectures),
            "reason": self.reason,
        }


# name fragments that say the family outright, most specific first
_NAME_HINTS: tuple[tuple[str, str], ...] = (
    (r"deepseek-r1-distill", "deepseek-r1-distill"),
    (r"smollm2", "smollm2"),
    (r"llama-?3\.3", "llama3.3"),
    (r"llama-?3\.2", "llama3.2"),
    (r"llama-?3\.1", "llama3.1"),
    (r"llama-?3", "llama3"),
    (r"llama-?2", "llama2"),
    (r"qwen3", "qwen3"),
    (r"qwen2\.5|qwen2-5", "qwen2.5"),
    (r"qwen2", "qwen2"),
    (r"gemma-?3", "gemma3"),
    (r"gemma-?2", "gemma2"),
    (r"phi-?4", "phi4"),
    (r"phi-?3", "phi3"),
    (r"mistral|mixtral|ministral", "mistral"),
    (r"internlm3", "internlm3"),
    (r"internlm2", "internlm2"),
    (r"glm-?4", "glm4"),
    (r"(^|[/ _-])yi-", "yi"),
)


def match_family(path: str | Path) -> FamilyMatch | None:
    """Recognise the model at ``path`` (a folder with ``config.json``, or a ``.gguf`` file).

    Returns None when the folder is a model of no known family.

    Raises:
        MartletError: ``path`` does not exist, or is neither a model folder nor a GGUF file.
    """
    p = Path(path).expanduser()
    if p.is_file() and p.suffix.lower() == ".gguf":
        return _match_gguf(p)
    if not p.exists():
        raise MartletError(f"{str(path)!r} does not exist", fix="check the path")
    config_file = p / "config.json"
    if not p.is_dir() or not config_file.is_file():
        raise MartletError(
            f"{str(path)!r} is not a model folder",
            why="a Hugging Face model folder holds a config.json",
            fix="give the folder that holds config.json, or a .gguf file",
        )
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MartletError(
            f"cannot read {config_file}", why=f"{type(exc).__name__}: {exc}", cause=exc
        ) from exc
    if not isinstance(config, dict):
        raise MartletError(f"{config_file} does not hold a JSON object")
    names = [*_folder_names(p), *_config_names(config), *_source_names(p)]
    text = config.get("text_config") if isinstance(config.get("text_config"), dict) else {}
    return _decide(
        model_type=str(config.get("model_type", "")),
        architectures=tuple(config.get("architectures") or ()),
        vocab_size=config.get("vocab_size") or text.get("vocab_size"),
        config=config,
        names=names,
    )


def _match_gguf(path: Path) -> FamilyMatch | None:
    from martlet_hf.gguf_header import read_metadata

    meta = read_metadata(path)
    arch = str(meta.get("general.architecture", ""))
    tokens = meta.get("tokenizer.ggml.tokens")
    vocab = meta.get(f"{arch}.vocab_size") or getattr(tokens, "length", None)
    names = [path.stem] + [
        str(meta[k]) for k in ("general.name", "general.basename") if meta.get(k)
    ]
    return _decide(model_type=arch, architectures=(), vocab_size=vocab, config={}, names=names)


def _folder_names(p: Path) -> list[str]:
    p = p.resolve()
    out = [p.name]
    # a Hugging Face cache snapshot: .../models--org--name/snapshots/<sha>
    if p.parent.name == "snapshots" and p.parent.parent.name.startswith("models--"):
        out.append(p.parent.parent.name[len("models--") :].replace("--", "/"))
    return out


def _config_names(config: dict) -> list[str]:
    return [str(config[k]) for k in ("_name_or_path", "_model_name_or_path") if config.get(k)]


def _source_names(p: Path) -> list[str]:
    # a folder converted from GGUF by martlet-hf records where it came from
    source = p / "martlet-source.json"
    if not source.is_file():
        return []
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [str(data[k]) for k in ("file", "name") if data.get(k)]


def _known_models() -> list[tuple[str, str, str, tuple[str, ...]]]:
    """(name, family, template, hub ids) of every catalogued model."""
    return [
        (m.name, m.family, template_of(m), tuple(x for x in (m.hf, m.ms) if x))
        for m in [*MODELS, DEFAULT_MODEL]
    ]


def _norm(text: str) -> str:
    return text.strip().lower().replace("_", "-").replace(" ", "-")


def _decide(
    *,
    model_type: str,
    architectures: tuple[str, ...],
    vocab_size: Any,
    config: dict,
    names: list[str],
) -> FamilyMatch | None:
    def made(family: str, reason: str, model: str | None = None, template: str = "") -> FamilyMatch:
        return FamilyMatch(
            family=family,
            template=template or FAMILIES[family].template,
            model=model,
            model_type=model_type,
            architectures=architectures,
            reason=reason,
        )

    # 1. the folder is a catalogued model (by its id or hub repository name)
    normalised = [_norm(n) for n in names if n]
    for name, family, template, hub_ids in _known_models():
        keys = (
            {_norm(name)} | {_norm(h) for h in hub_ids} | {_norm(h.split("/")[-1]) for h in hub_ids}
        )
        for n in normalised:
            if (n in keys or _norm(n.split("/")[-1]) in keys) and _fits(family, model_type):
                return made(
                    family, f"its name {n!r} is the registered model {name!r}", name, template
                )

    # 2. a family named in the folder's or model's name, when the model type agrees
    for n in normalised:
        for pattern, family in _NAME_HINTS:
            if re.search(pattern, n) and _fits(family, model_type):
                return made(family, f"its name {n!r} says {family} (model_type {model_type!r})")

    # 3. the model type, with the vocabulary and rope settings to tell versions apart
    family, why = _by_model_type(model_type, vocab_size, config)
    if family:
        return made(family, why)
    return None


def _fits(family: str, model_type: str) -> bool:
    return not model_type or model_type in FAMILIES[family].model_types


def _by_model_type(model_type: str, vocab: Any, config: dict) -> tuple[str | None, str]:
    simple = {
        "mllama": "llama3.2",
        "qwen3": "qwen3",
        "qwen3_moe": "qwen3",
        "mistral": "mistral",
        "gemma2": "gemma2",
        "gemma3": "gemma3",
        "gemma3_text": "gemma3",
        "chatglm": "glm4",
        "glm4": "glm4",
        "glm": "glm4",
        "internlm2": "internlm2",
        "internlm3": "internlm3",
    }
    if model_type in simple:
        return simple[model_type], f"model_type {model_type!r}"
    if model_type == "qwen2":
        return "qwen2.5", "model_type 'qwen2' (shared by Qwen2 and Qwen2.5; Qwen2.5 assumed)"
    if model_type == "phi3":
        if vocab in (100352, 200064):
            return "phi4", f"model_type 'phi3' with Phi-4's vocabulary ({vocab} tokens)"
        return "phi3", "model_type 'phi3'"
    if model_type == "llama":
        rope = config.get("rope_scaling") or config.get("rope_parameters") or {}
        rope_type = rope.get("rope_type") or rope.get("type") if isinstance(rope, dict) else None
        if vocab == 32000:
            return "llama2", "model_type 'llama' with Llama 2's 32000-token vocabulary"
        if vocab == 49152:
            return "smollm2", "model_type 'llama' with SmolLM2's 49152-token vocabulary"
        if vocab == 64000:
            return "yi", "model_type 'llama' with Yi's 64000-token vocabulary"
        if vocab in (128256, 128000):
            if rope_type == "llama3":
                if config.get("tie_word_embeddings"):
                    return "llama3.2", "Llama 3 vocabulary, llama3 rope and tied embeddings"
                return "llama3.1", "Llama 3 vocabulary and llama3 rope scaling"
            return "llama3", "model_type 'llama' with Llama 3's 128256-token vocabulary"
    return None, ""
