"""Keep gptqmodel out of processes that have none of its layers.

PEFT asks ``is_gptqmodel_available()`` whenever it wraps or loads a LoRA layer, and where
gptqmodel is installed it then imports it to test ``isinstance(layer, BaseQuantLinear)``. That
import costs every LoRA command ~140 MiB of memory, four threads (two of them wake on a timer),
a banner on stdout and a newline written there at exit. A layer can only be one of gptqmodel's
if gptqmodel has been imported (transformers imports it to load a GPTQ or AWQ checkpoint;
martlet-gptq and martlet-awq import it to quantize), so until then PEFT's question is answered
"no" without importing it; afterwards PEFT's own answer is given.

:func:`guard` is called from the ``martlet_configure`` and ``martlet_model_loaded`` hooks below,
which martlet-gptq and martlet-awq register (their entry modules import them). It imports
nothing heavy: where ``peft.import_utils`` is not imported yet, a finder on ``sys.meta_path``
waits for it and guards it as it loads.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from typing import Any

from martlet import hookimpl

_MODULE = "peft.import_utils"
_NAME = "is_gptqmodel_available"


def guard() -> None:
    """Make PEFT's ``is_gptqmodel_available`` false while gptqmodel is not imported (see the
    module's text); idempotent."""
    utils = sys.modules.get(_MODULE)
    if utils is not None:
        _guard_loaded(utils)
    elif not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())


def _guarded(original: Any) -> Any:
    def is_gptqmodel_available() -> bool:
        return "gptqmodel" in sys.modules and original()

    is_gptqmodel_available.martlet_guarded = True  # type: ignore[attr-defined]
    is_gptqmodel_available.cache_clear = getattr(  # type: ignore[attr-defined]
        original, "cache_clear", lambda: None
    )
    is_gptqmodel_available.__wrapped__ = original  # type: ignore[attr-defined]
    return is_gptqmodel_available


def _guard_loaded(utils: Any) -> None:
    """Replace the function in ``peft.import_utils`` and wherever PEFT's modules bound it."""
    original = getattr(utils, _NAME, None)
    if original is None or getattr(original, "martlet_guarded", False):
        return
    guarded = _guarded(original)
    for name, module in list(sys.modules.items()):
        ours = name == "peft" or name.startswith("peft.")
        if ours and getattr(module, _NAME, None) is original:
            setattr(module, _NAME, guarded)


class _Finder(importlib.abc.MetaPathFinder):
    """Guards ``peft.import_utils`` right after it executes, before other PEFT modules bind
    its function by name."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != _MODULE:
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        loader = spec.loader
        run = loader.exec_module

        def exec_module(module: Any) -> None:
            run(module)
            _guard_loaded(module)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


@hookimpl
def martlet_configure(config: Any) -> None:
    guard()


@hookimpl
def martlet_model_loaded(model: Any, config: Any) -> None:
    guard()
