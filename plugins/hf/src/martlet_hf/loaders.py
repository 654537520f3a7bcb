"""Model loaders: Hugging Face folders and hub ids (``hf``), and GGUF files (``gguf``).

Exactly one of them claims a source: ``gguf`` takes paths ending in ``.gguf``; ``hf`` takes
folders, hub ids and paths that look like folders, but never a ``.gguf`` path.

Nothing here downloads. A hub id loads from what is on disk (a ``martlet download`` folder or
the local Hugging Face cache); when it is not there, the error says to run ``martlet download``.

A GGUF file is dequantized by transformers once and cached as a safetensors folder under the
Martlet cache directory (``gguf/<name>-<key>``, the key built from the file's path, size and
modification time), so the next load reads safetensors and takes well under a second.

``task_type="seq_cls"`` (alias ``reward``) loads the model body with a sequence classification
head of ``num_labels`` outputs (``AutoModelForSequenceClassification``; a reward model has one)
instead of the language-model head, from a folder or a GGUF file's cached folder alike.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import inspect
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from martlet.errors import ConfigError, MartletError, brief
from martlet.paths import cache_dir
from martlet.rundirs import check_folder, run_folder, run_tuner

from martlet_hf.hub import find_local, hf_offline, looks_like_hub_id, unknown_model
from martlet_hf.options import check_num_labels, check_task_type

#: accepted spellings -> the dtype name transformers takes
DTYPES = {
    "auto": "auto",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
}
#: accepted spellings -> transformers' attention implementation names
ATTN_IMPLS = {
    "eager": "eager",
    "sdpa": "sdpa",
    "flash_attn": "flash_attention_2",
    "flash_attention_2": "flash_attention_2",
    "flash_attention_3": "flash_attention_3",
    "flex_attention": "flex_attention",
}
MODEL_OPTIONS = (
    "torch_dtype",
    "device_map",
    "attn_impl",
    "max_memory",
    "trust_remote_code",
    "revision",
    "quantization_config",
    "model_kwargs",
    "task_type",
    "num_labels",
)
#: other names accepted for options (ms-swift's and transformers')
OPTION_ALIASES = {
    "dtype": "torch_dtype",
    "attn_implementation": "attn_impl",
    "model_revision": "revision",
}
PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json")
SOURCE_FILE = "martlet-source.json"
_FORMAT = 1  # bump to re-convert every cached GGUF folder


class ModelLoadError(MartletError):
    """A model or tokenizer could not be loaded."""


# ---------------------------------------------------------------------- options


def normalize_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Loader options under their canonical names, validated.

    Raises:
        ConfigError: an unknown option, or a bad dtype, attention implementation,
            ``device_map``, ``max_memory``, ``task_type`` or ``num_labels``.
    """
    out: dict[str, Any] = {}
    for raw, value in options.items():
        name = OPTION_ALIASES.get(raw, raw)
        if name not in MODEL_OPTIONS:
            close = difflib.get_close_matches(raw, [*MODEL_OPTIONS, *OPTION_ALIASES], n=1)
            raise ConfigError(
                f"unknown model loading option {raw!r}",
                why=f"did you mean {close[0]!r}?" if close else None,
                fix=f"the options are: {', '.join(MODEL_OPTIONS)}",
            )
        if value is None:
            continue
        out[name] = value
    if "torch_dtype" in out:
        out["torch_dtype"] = check_dtype(out["torch_dtype"])
    if "attn_impl" in out:
        out["attn_impl"] = check_attn_impl(out["attn_impl"])
    if "device_map" in out:
        out["device_map"] = _device_map(out["device_map"])
    if "max_memory" in out:
        out["max_memory"] = _max_memory(out["max_memory"])
    if "trust_remote_code" in out and not isinstance(out["trust_remote_code"], bool):
        raise ConfigError(
            f"trust_remote_code must be true or false, got {out['trust_remote_code']!r}"
        )
    if "model_kwargs" in out and not isinstance(out["model_kwargs"], Mapping):
        raise ConfigError("model_kwargs must be a mapping of from_pretrained arguments")
    if "task_type" in out:
        out["task_type"] = check_task_type(out["task_type"])
    if "num_labels" in out:
        out["num_labels"] = check_num_labels(out["num_labels"], out.get("task_type", "causal_lm"))
    return out


def check_dtype(value: Any) -> str:
    """The dtype name for ``value`` (``bf16`` -> ``bfloat16``, a ``torch.dtype`` too)."""
    text = str(value).strip().lower().removeprefix("torch.")
    if text not in DTYPES:
        raise ConfigError(
            f"unknown torch_dtype {value!r}",
            why="the weights load in one of: auto, bfloat16, float16, float32",
            fix="e.g. --torch-dtype bfloat16 (auto keeps the dtype the checkpoint was saved in)",
        )
    return DTYPES[text]


def check_attn_impl(value: Any) -> str:
    text = str(value).strip().lower()
    if text not in ATTN_IMPLS:
        raise ConfigError(
            f"unknown attention implementation {value!r}",
            fix="use one of: eager, sdpa, flash_attn (flash_attention_2), flash_attention_3, "
            "flex_attention",
        )
    return ATTN_IMPLS[text]


def _json_value(value: Any, option: str) -> Any:
    if isinstance(value, str) and value.strip().startswith("{"):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{option} is not valid JSON: {value!r}", why=str(exc)) from None
    return value


def _device_map(value: Any) -> Any:
    value = _json_value(value, "device_map")
    if isinstance(value, (str, Mapping)):
        return dict(value) if isinstance(value, Mapping) else value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ConfigError(
        f"device_map must be a name (auto, cpu, cuda:0, ...) or a JSON mapping, got {value!r}"
    )


def _max_memory(value: Any) -> dict:
    value = _json_value(value, "max_memory")
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"max_memory must be a mapping of device to size, got {value!r}",
            fix='e.g. --max-memory \'{"0": "20GiB", "cpu": "64GiB"}\'',
        )
    return {int(k) if str(k).isdigit() else k: v for k, v in value.items()}


@functools.cache
def _accepts_use_kernels() -> bool:
    """Whether this transformers knows ``from_pretrained(use_kernels=...)`` (4.54 and later)."""
    from transformers import modeling_utils

    return "use_kernels" in inspect.getsource(modeling_utils.PreTrainedModel.from_pretrained)


def _from_pretrained_kwargs(options: dict[str, Any]) -> dict[str, Any]:
    kwargs: dict[str, Any] = dict(options.get("model_kwargs") or {})
    kwargs["trust_remote_code"] = bool(options.get("trust_remote_code", False))
    kwargs["local_files_only"] = True
    # transformers 5 turns on hub kernels by default: fetched from the hub at run time, and
    # re-applied by every model.train()/eval(), which would undo Martlet's own kernel switches
    if _accepts_use_kernels():
        kwargs.setdefault("use_kernels", False)
    if "torch_dtype" in options:
        kwargs["dtype"] = options["torch_dtype"]
    if "attn_impl" in options:
        kwargs["attn_implementation"] = options["attn_impl"]
    if "max_memory" in options:
        kwargs["max_memory"] = options["max_memory"]
        kwargs.setdefault("device_map", "auto")  # max_memory only means something with one
    if "device_map" in options:
        kwargs["device_map"] = options["device_map"]
    if "quantization_config" in options:
        kwargs["quantization_config"] = options["quantization_config"]
    return kwargs


# ---------------------------------------------------------------------- Hugging Face


def _is_pathlike(source: str) -> bool:
    return source.startswith(("/", "./", "../", "~", ".\\", "..\\")) or (
        len(source) > 1 and source[1] == ":"  # C:\...
    )


class HfLoader:
    """Hugging Face folders (``config.json`` + weights) and hub ids available on disk."""

    def can_load(self, source: str) -> bool:
        if source.lower().endswith(".gguf"):
            return False
        path = Path(source).expanduser()
        if path.is_dir():
            return True
        if path.exists():
            return False  # a file that is not GGUF: not ours
        return _is_pathlike(source) or looks_like_hub_id(source)

    def folder(self, source: str, revision: str | None = None) -> Path:
        """The local folder ``source`` loads from.

        Raises:
            ModelLoadError: a missing folder, one without config.json, or a hub id that is not
                on this machine.
        """
        path = Path(source).expanduser()
        if path.is_dir():
            if not (path / "config.json").is_file():
                run = run_folder(path)
                if run is not None:
                    check_folder(path, run_tuner(run))  # a damaged run: name the file first
                    raise ModelLoadError(
                        f"{source!r} is a training run, not a model folder",
                        why="it holds what the run trained (an adapter) and the name of its "
                        f"base model in {run / 'config.yaml'}, not a whole model",
                        fix=f"pass it as --adapters {source} (in Python: martlet.load_run), or "
                        "merge it into a model folder with `martlet export --merge-lora`",
                    )
                raise ModelLoadError(
                    f"{source!r} is not a model folder",
                    why="it has no config.json",
                    fix="give the folder that holds config.json and the weights",
                )
            return path
        if _is_pathlike(source) or not looks_like_hub_id(source):
            raise ModelLoadError(f"model folder {source!r} does not exist", fix="check the path")
        found = find_local(source, revision)
        if found:
            return Path(found[1])
        if "/" not in source:
            # `martlet download` takes a registered id or an org/name hub id, so it could not
            # fetch this one either: a mistyped model id, most likely
            raise unknown_model(
                source,
                why=f"{source!r} is no registered model id, no local path, and no hub model "
                "in the local Hugging Face cache",
            )
        raise ModelLoadError(
            f"the Hugging Face Hub model {source!r} is not on this machine",
            why="a hub id loads only from disk (a `martlet download` folder or the local "
            "Hugging Face cache); nothing is downloaded implicitly",
            fix=f"{download_hint(source)}, or pass the path of a local folder that holds the model",
        )

    def load(self, source: str, **options: Any) -> tuple[Any, Any]:
        opts = normalize_options(options)
        folder = self.folder(source, opts.get("revision"))
        check_folder(folder, _folder_tuner(folder), as_model=True)
        tokenizer = _load_tokenizer(folder, opts)
        model = _load_model(folder, opts, tokenizer)
        return model, tokenizer

    def load_tokenizer(self, source: str, **options: Any) -> Any:
        opts = normalize_options(options)
        return _load_tokenizer(self.folder(source, opts.get("revision")), opts)


def _folder_tuner(folder: Path) -> str | None:
    """The tuner of the run ``folder`` is (a whole-model run loads as a folder too), or None."""
    run = run_folder(folder)
    return run_tuner(run) if run is not None else None


def download_hint(repo_id: str) -> str:
    """How to fetch hub id ``repo_id`` (``org/name``) with ``martlet download``: from the hub a
    registered model names it on (ModelScope needs ``--hub modelscope``), and saying to unset
    ``HF_HUB_OFFLINE`` first where that would refuse the download."""
    from martlet.registry import records

    hubs = [
        hub
        for record in records("models")
        for hub, value in record.hub_ids.items()
        if value == repo_id and hub in ("huggingface", "modelscope")
    ]
    if hubs and "huggingface" not in hubs:
        return f"run `martlet download {repo_id} --hub modelscope` (needs the network)"
    command = f"`martlet download {repo_id}`"
    if hf_offline():
        return f"unset HF_HUB_OFFLINE, then run {command} (needs the network)"
    return f"run {command} (needs the network)"


def _load_tokenizer(folder: Path, opts: dict[str, Any]) -> Any:
    trust = bool(opts.get("trust_remote_code", False))
    try:
        if any((folder / name).is_file() for name in PROCESSOR_FILES):
            from transformers import AutoProcessor

            return AutoProcessor.from_pretrained(
                folder, trust_remote_code=trust, local_files_only=True
            )
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(folder, trust_remote_code=trust, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - reported with its cause
        raise _load_error("tokenizer", folder, exc) from exc


def _load_model(folder: Path, opts: dict[str, Any], tokenizer: Any = None) -> Any:
    if opts.get("task_type", "causal_lm") == "seq_cls":
        return _load_seq_cls(folder, opts, tokenizer)
    from transformers import AutoModelForCausalLM

    kwargs = _from_pretrained_kwargs(opts)
    try:
        try:
            return AutoModelForCausalLM.from_pretrained(folder, **kwargs)
        except ValueError as exc:
            if "Unrecognized configuration class" not in str(exc):
                raise
            from transformers import AutoModelForImageTextToText  # a multimodal model

            return AutoModelForImageTextToText.from_pretrained(folder, **kwargs)
    except Exception as exc:  # noqa: BLE001 - reported with its cause
        raise _load_error("model", folder, exc) from exc


def _load_seq_cls(folder: Path, opts: dict[str, Any], tokenizer: Any) -> Any:
    """The model body with a sequence classification head of ``num_labels`` outputs (new and
    randomly initialised unless the folder holds one), ``config.pad_token_id`` set."""
    from transformers import AutoModelForSequenceClassification

    kwargs = _from_pretrained_kwargs(opts)
    kwargs["num_labels"] = int(opts.get("num_labels", 1))
    try:
        model = AutoModelForSequenceClassification.from_pretrained(folder, **kwargs)
    except ValueError as exc:
        if "Unrecognized configuration class" not in str(exc):
            raise _load_error("model", folder, exc) from exc
        raise ModelLoadError(
            f"cannot load the model in {folder} with a sequence classification head",
            why="transformers has no *ForSequenceClassification class for its architecture",
            fix="use a decoder model such as Llama, Qwen or Mistral for --task-type seq_cls",
            cause=exc,
        ) from exc
    except Exception as exc:  # noqa: BLE001 - reported with its cause
        raise _load_error("model", folder, exc) from exc
    set_pad_token_id(model, tokenizer)
    return model


def set_pad_token_id(model: Any, tokenizer: Any) -> None:
    """Give ``model.config`` a ``pad_token_id``: the tokenizer's pad token, else the one the
    config has, else the EOS token (transformers' sequence classifiers need one to batch)."""
    tok = getattr(tokenizer, "tokenizer", None) or tokenizer
    pad = getattr(tok, "pad_token_id", None)
    if pad is None:
        pad = model.config.pad_token_id
    if pad is None:
        pad = getattr(tok, "eos_token_id", None)
    if pad is None:
        eos = model.config.eos_token_id
        pad = eos[0] if isinstance(eos, (list, tuple)) and eos else eos
    model.config.pad_token_id = pad


def _load_error(what: str, folder: Path, exc: BaseException) -> ModelLoadError:
    text = str(exc)
    fix = "check that the folder holds a complete model (config.json, weights, tokenizer)"
    if "trust_remote_code" in text:
        fix = (
            "this model runs its own Python code; pass --trust-remote-code "
            "(trust_remote_code=True) only if you trust its authors"
        )
    elif "flash_attn" in text or "flash_attention" in text or "attn_implementation" in text:
        fix = "choose another --attn-impl (sdpa or eager), or install flash-attn"
    elif "out of memory" in text.lower():
        fix = "use a smaller --torch-dtype, --device-map auto, or a machine with more memory"
    return ModelLoadError(
        f"cannot load the {what} from {folder}",
        why=brief(exc),
        fix=fix,
        cause=exc,
    )


# ---------------------------------------------------------------------- GGUF


def gguf_cache_folder(path: str | Path) -> Path:
    """Where the safetensors copy of GGUF file ``path`` is (or will be) cached.

    The name changes when the file's path, size or modification time does, so a changed file
    is converted again.
    """
    file = Path(path).expanduser().resolve()
    stat = file.stat()
    key = f"{file}|{stat.st_size}|{stat.st_mtime_ns}|{_FORMAT}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_dir() / "gguf" / f"{file.stem}-{digest}"


def is_converted(folder: Path) -> bool:
    """Whether ``folder`` is a complete conversion (its source record is written last)."""
    return (folder / SOURCE_FILE).is_file()


def convert_gguf(path: str | Path) -> Path:
    """The safetensors folder of GGUF file ``path``, converting it first if needed.

    Safe when several processes convert the same file at once: one converts (into a temporary
    folder renamed into place), the others wait for it.

    Raises:
        ModelLoadError: the file is missing, not GGUF, or transformers cannot read it.
    """
    from martlet_hf.gguf_header import read_metadata

    file = Path(path).expanduser()
    if not file.is_file():
        raise ModelLoadError(
            f"GGUF file {str(path)!r} not found",
            fix="check the path" if not file.exists() else "give a .gguf file, not a folder",
        )
    meta = read_metadata(file)  # a clear error for a file that is not GGUF
    folder = gguf_cache_folder(file)
    if is_converted(folder):
        return folder
    try:
        return _convert_locked(file, folder, meta)
    except OSError as exc:
        raise ModelLoadError(
            f"cannot write the converted copy of {file.name} to {folder.parent}",
            why=f"{type(exc).__name__}: {exc}",
            fix="free some disk space, or point MARTLET_CACHE at a writable folder",
            cause=exc,
        ) from exc


def _convert_locked(file: Path, folder: Path, meta: dict[str, Any]) -> Path:
    from filelock import FileLock

    locks = folder.parent / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    with FileLock(str(locks / f"{folder.name}.lock")):
        if is_converted(folder):
            return folder
        print(
            f"martlet: converting {file.name} to safetensors once (cached in {folder})",
            file=sys.stderr,
            flush=True,
        )
        tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-"))
        try:
            _dequantize(file, tmp)
            source = {
                "file": file.name,
                "path": str(file.resolve()),
                "size": file.stat().st_size,
                "mtime_ns": file.stat().st_mtime_ns,
                "name": str(meta.get("general.name", "")),
                "architecture": str(meta.get("general.architecture", "")),
            }
            (tmp / SOURCE_FILE).write_text(json.dumps(source, indent=2), encoding="utf-8")
            if folder.exists():
                shutil.rmtree(folder)  # an incomplete leftover
            os.replace(tmp, folder)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _dequantize(file: Path, out: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, Any] = {"gguf_file": file.name, "local_files_only": True}
    try:
        from transformers import GgufConfig

        kwargs["quantization_config"] = GgufConfig(dequantize=True)
    except ImportError:  # older transformers always dequantize
        pass
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            file.parent, gguf_file=file.name, local_files_only=True
        )
        model = AutoModelForCausalLM.from_pretrained(file.parent, **kwargs)
    except Exception as exc:  # noqa: BLE001 - reported with its cause
        raise ModelLoadError(
            f"transformers cannot load the GGUF file {file}",
            why=brief(exc),
            fix="transformers reads GGUF files of common architectures (llama, mistral, qwen2, "
            "...); convert this one to a Hugging Face folder with llama.cpp's tools",
            cause=exc,
        ) from exc
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        quantizer.remove_quantization_config(model)  # the weights are plain tensors now
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


class GgufLoader:
    """GGUF files (``*.gguf``), dequantized through transformers and cached as safetensors."""

    def can_load(self, source: str) -> bool:
        return source.lower().endswith(".gguf")

    def load(self, source: str, **options: Any) -> tuple[Any, Any]:
        opts = normalize_options(options)
        folder = convert_gguf(source)
        check_folder(folder, as_model=True)
        tokenizer = _load_tokenizer(folder, opts)
        return _load_model(folder, opts, tokenizer), tokenizer

    def load_tokenizer(self, source: str, **options: Any) -> Any:
        opts = normalize_options(options)
        return _load_tokenizer(convert_gguf(source), opts)
