"""Checks of the files a run directory, a checkpoint or a model folder loads, before they load.

A run directory (or one of its ``checkpoint-N`` folders) holds what its tuner saved: a PEFT
adapter (``adapter_config.json`` + ``adapter_model.safetensors``), whole weights
(``model.safetensors`` or shards named by ``model.safetensors.index.json``), or ReFT
interventions. A file deleted, cut short by a full disk or a killed copy, or overwritten with
something else would otherwise surface as a library's message about the network or a
safetensors header; :func:`check_folder` names the file and says what to do instead.

It reads only file sizes and safetensors headers (a few kilobytes), so every load can afford
it: model loaders (martlet-hf's) run it on each folder they load, and
:func:`martlet.runs.load_run` (what ``martlet infer`` and ``martlet export`` use for
``--adapters``) on the run before loading it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from martlet.errors import MartletError

RUN_CONFIG = "config.yaml"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
REFT_CONFIG = "reft_config.json"
REFT_WEIGHTS = "reft_interventions.safetensors"
EXPORT_RECORD = "martlet_export.json"
GGUF_RECORD = "martlet-source.json"
CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
MAX_HEADER = 100_000_000  # the largest header the safetensors library reads


class DamagedFilesError(MartletError):
    """A file a run, checkpoint or model folder needs is missing or damaged."""


# ---------------------------------------------------------------------- checks


def check_folder(folder: str | Path, tuner: str | None = None, *, as_model: bool = False) -> None:
    """Check the trained files in ``folder`` (a run, a checkpoint or a model folder).

    Every adapter, weights file and shard that the folder's files (or, for a run, its
    ``tuner``) say should be there must exist and be whole. With ``as_model`` (the folder is
    about to load as a model, adapter and all, as transformers does), a model that Martlet
    merged must not sit next to an adapter: it would be applied a second time.

    Raises:
        DamagedFilesError: a missing or damaged file, named, with what to do.
    """
    folder = Path(folder)
    has = {name for name in _names(folder)}
    adapter_files = [n for n in ADAPTER_WEIGHTS if n in has]
    for name in _saves(tuner):  # what the run's tuner record says its save writes
        if name in ADAPTER_WEIGHTS:
            if not adapter_files:
                raise _missing(folder, name)
        elif name == WEIGHTS:
            if not has & {WEIGHTS, WEIGHTS_INDEX, "pytorch_model.bin"}:
                raise _missing(folder, WEIGHTS, "the trained weights")
        elif name not in has:
            raise _missing(folder, name)

    if ADAPTER_CONFIG in has or adapter_files:
        if ADAPTER_CONFIG not in has:
            raise _missing(folder, ADAPTER_CONFIG)
        _check_json(folder / ADAPTER_CONFIG, folder)
        if not adapter_files:
            raise _missing(folder, ADAPTER_WEIGHTS[0])
        if adapter_files[0].endswith(".safetensors"):
            check_safetensors(folder / adapter_files[0], folder)
        if as_model and (folder / "config.json").is_file():
            _refuse_adapter_on_merged(folder)

    if REFT_CONFIG in has or REFT_WEIGHTS in has:
        for name in (REFT_CONFIG, REFT_WEIGHTS):
            if name not in has:
                raise _missing(folder, name)
        _check_json(folder / REFT_CONFIG, folder)
        check_safetensors(folder / REFT_WEIGHTS, folder)

    if WEIGHTS_INDEX in has:
        index = _check_json(folder / WEIGHTS_INDEX, folder)
        weight_map = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(weight_map, dict):
            raise _damaged(folder / WEIGHTS_INDEX, folder, "it names no weight_map of shards")
        for name in sorted({str(v) for v in weight_map.values()}):
            if not (folder / name).is_file():
                raise _missing(folder, name, f"a shard of the weights named by {WEIGHTS_INDEX}")
            if name.endswith(".safetensors"):
                check_safetensors(folder / name, folder)
    elif WEIGHTS in has:
        check_safetensors(folder / WEIGHTS, folder)


def _saves(tuner: str | None) -> tuple[str, ...]:
    """The files tuner record ``tuner`` says its ``save`` writes (none for a tuner not
    installed, or no tuner: then only the files present are checked)."""
    if not tuner:
        return ()
    from martlet.manager import get_manager

    record = get_manager().registry.find("tuners", tuner)
    return tuple(getattr(record, "saves", ())) if record is not None else ()


def check_safetensors(file: Path, folder: Path | None = None) -> None:
    """Check that ``file`` is a whole safetensors file: its header is there, is JSON, and the
    tensors it lists end within the file.

    Raises:
        DamagedFilesError: the file is empty, cut short, or not a safetensors file.
    """
    folder = folder if folder is not None else file.parent
    try:
        size = file.stat().st_size
        with open(file, "rb") as handle:
            head = handle.read(8)
            if len(head) < 8:
                raise _damaged(file, folder, f"it is {size} bytes long, too short to be weights")
            length = int.from_bytes(head, "little")
            if length > MAX_HEADER:
                raise _damaged(
                    file, folder, "it does not begin with a safetensors header (overwritten?)"
                )
            if length > size - 8:
                raise _damaged(
                    file,
                    folder,
                    f"its header alone needs {length + 8} bytes but the file has {size}: it "
                    "was cut short",
                )
            raw = handle.read(length)
    except OSError as exc:
        raise _damaged(file, folder, f"it cannot be read ({exc.strerror or exc})") from exc
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        header = None
    if not isinstance(header, dict):
        raise _damaged(file, folder, "its header is not a safetensors header")
    end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2):
            raise _damaged(file, folder, f"its header entry for {name!r} is malformed")
        end = max(end, int(offsets[1]))
    if 8 + length + end > size:
        raise _damaged(
            file,
            folder,
            f"its tensors need {8 + length + end} bytes but the file has {size}: it was cut short",
        )


# ---------------------------------------------------------------------- runs


def run_folder(folder: Path) -> Path | None:
    """The Martlet run directory ``folder`` is or belongs to (a checkpoint's parent), else
    None. A run's config.yaml names its base ``model``; other folders may have a config.yaml
    of their own."""
    if _run_config(folder) is not None:
        return folder
    if CHECKPOINT.match(folder.name) and _run_config(folder.parent) is not None:
        return folder.parent
    return None


def run_tuner(run: Path) -> str | None:
    """The tuner named in the run's config.yaml, or None when ``run`` is not a readable run
    directory or names none."""
    config = _run_config(run)
    from martlet.config import selection

    return None if config is None else selection(config, "tuner")


def _run_config(folder: Path) -> dict[str, Any] | None:
    file = folder / RUN_CONFIG
    if not file.is_file():
        return None
    try:
        import yaml

        config = yaml.safe_load(file.read_text(encoding="utf-8"))
    except Exception:  # noqa: BLE001 - an unreadable config is reported by whoever reads it
        return None
    return config if isinstance(config, dict) and config.get("model") else None


# ---------------------------------------------------------------------- messages


def _names(folder: Path) -> list[str]:
    try:
        return [p.name for p in folder.iterdir()]
    except OSError:
        return []


def _merged_export(folder: Path) -> bool:
    """Whether ``folder`` holds a model written by ``martlet export`` (merged weights)."""
    return (folder / EXPORT_RECORD).is_file()


def _refuse_adapter_on_merged(folder: Path) -> None:
    """Refuse a Martlet folder (a run, an export) holding a whole model next to an adapter:
    transformers would load the model and apply the adapter again on weights that include it."""
    run = run_folder(folder)
    if run is None and not _merged_export(folder):
        return  # a model shipped with its own adapter, as transformers knows them
    why = (
        "transformers loads the folder's config.json and weights and then applies the adapter "
        "next to them, but the weights already include it: the adapter would count twice"
    )
    if run is not None:
        fix = (
            f"load the run with --adapters {folder} (martlet.load_run), which applies the "
            "adapter once to the base model; for a merged model, export into a new, empty "
            f"--output-dir and delete config.json and model*.safetensors from {folder}"
        )
    else:
        fix = (
            f"delete {ADAPTER_CONFIG} and adapter_model.* from {folder}, or export again into "
            "a new, empty --output-dir"
        )
    raise DamagedFilesError(
        f"{folder} holds a merged model next to an adapter ({ADAPTER_CONFIG})", why=why, fix=fix
    )


def _check_json(file: Path, folder: Path) -> Any:
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _damaged(file, folder, f"it is not valid JSON ({exc})") from exc


def _missing(folder: Path, name: str, holds: str | None = None) -> DamagedFilesError:
    return DamagedFilesError(
        f"{folder / name} is missing",
        why=f"it holds {holds or _holds(name)}, without which {_label(folder)} cannot load",
        fix=fix_for(folder),
    )


def _damaged(file: Path, folder: Path, why: str) -> DamagedFilesError:
    return DamagedFilesError(
        f"{file} is damaged",
        why=f"{why}; it holds {_holds(file.name)}, without which {_label(folder)} cannot load",
        fix=fix_for(folder),
    )


def _holds(name: str) -> str:
    if name == ADAPTER_CONFIG:
        return "the adapter's settings"
    if name.startswith("adapter_model"):
        return "the adapter's trained weights"
    if name.startswith("reft_"):
        return "the trained ReFT interventions"
    if name == WEIGHTS_INDEX:
        return "the list of the weights' shards"
    return "the model's weights"


def _label(folder: Path) -> str:
    run = run_folder(folder)
    if run is not None:
        return "the checkpoint" if run != folder else "the run directory"
    if _merged_export(folder):
        return "the exported model"
    return "the model folder"


def checkpoints(run: str | Path) -> list[Path]:
    """The ``checkpoint-N`` folders in ``run``, oldest (lowest N) first."""
    run = Path(run)
    found = []
    for path in run.iterdir() if run.is_dir() else ():
        match = CHECKPOINT.match(path.name)
        if match and path.is_dir():
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found)]


def fix_for(folder: Path) -> str:
    """What to do about a missing or damaged file in ``folder`` (a run, a checkpoint, an
    export, a converted GGUF or a model folder)."""
    run = run_folder(folder)
    if run is not None:
        others = [c for c in checkpoints(run) if c != folder]
        if others:
            newest = others[-1]
            return (
                f"use a checkpoint of the run as it is (--adapters {newest}), or continue "
                f"training from it (`martlet sft ... --resume-from-checkpoint {newest}`); "
                f"otherwise train again with the options in {run / RUN_CONFIG}"
            )
        return f"train again with the options in {run / RUN_CONFIG} (the run kept no checkpoint)"
    if _merged_export(folder):
        return "run `martlet export` again into an empty --output-dir"
    if (folder / GGUF_RECORD).is_file():
        return f"delete {folder}; the GGUF file is converted again on the next load"
    return "download the model again (`martlet download ID`), or copy the folder again"
