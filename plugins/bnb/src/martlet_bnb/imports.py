"""Importing bitsandbytes without the Hugging Face Hub (no heavy import here).

On a CPU with AVX512-BF16, ``import bitsandbytes`` (0.50) asks the hub for an optional kernel,
``kernels-community/quantization-bitsandbytes``, through the ``kernels`` package: a network
request in every process that imports it — and peft imports it, so every LoRA run does — which
fails offline (or on the kernel's publisher check) and logs a warning. The kernel serves only
bitsandbytes' repacked CPU path, which :func:`martlet_bnb.quantizer.keep_exact_layout` turns off.

:func:`without_hub_kernels` makes ``import kernels`` fail while bitsandbytes is imported, so it
does without; :func:`install` (called when Martlet loads this plugin) applies it to the first
import of bitsandbytes in the process, whoever imports it.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import logging
import os
import sys
from collections.abc import Iterator
from typing import Any

#: the bitsandbytes module that asks the hub for its optional CPU kernel as it is imported
CPU_OPS_LOGGER = "bitsandbytes.backends.cpu.ops"


@contextlib.contextmanager
def without_hub_kernels() -> Iterator[None]:
    """While active, ``import kernels`` fails (bitsandbytes then does without the hub kernel)
    and bitsandbytes' CPU backend does not log that it did (unless ``MARTLET_DEBUG`` is set)."""
    had = "kernels" in sys.modules
    saved = sys.modules.get("kernels")
    sys.modules["kernels"] = None  # type: ignore[assignment] - makes the import raise
    logger = logging.getLogger(CPU_OPS_LOGGER)
    level = logger.level
    if not os.environ.get("MARTLET_DEBUG"):
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
        if had:
            sys.modules["kernels"] = saved  # type: ignore[assignment]
        else:
            sys.modules.pop("kernels", None)


class _Loader(importlib.abc.Loader):
    """bitsandbytes' own loader, executing the package :func:`without_hub_kernels`."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        with without_hub_kernels():
            self._loader.exec_module(module)

    def __getattr__(self, name: str) -> Any:  # get_resource_reader, is_package, ...
        return getattr(self._loader, name)


class _Finder(importlib.abc.MetaPathFinder):
    """Finds ``bitsandbytes`` as the other finders do, wrapping its loader in :class:`_Loader`."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != "bitsandbytes":
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is self or isinstance(finder, _Finder) or find is None:
                continue
            spec = find(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _Loader(spec.loader)
                return spec
        return None


def install() -> None:
    """Import bitsandbytes :func:`without_hub_kernels` wherever it is first imported in this
    process (peft, transformers or Martlet); nothing to do once it is imported."""
    if "bitsandbytes" in sys.modules or any(isinstance(f, _Finder) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _Finder())
