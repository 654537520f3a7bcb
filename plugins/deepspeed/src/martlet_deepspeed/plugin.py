"""Registers the deepspeed parallel strategy (no torch or deepspeed import here)."""

from __future__ import annotations

import logging
import sys
from typing import Any

from martlet import hookimpl
from martlet.records import ParallelRecord

MARTLET_API = 1


class _DeviceGuess(logging.Filter):
    """Drops DeepSpeed's "Setting accelerator to CPU ..." notice, printed to stdout when
    deepspeed is first imported (a DeepSpeed run, or a user's code): Martlet chooses the device
    itself (``--device``), so the line says nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Setting accelerator to CPU")


logging.getLogger("DeepSpeed").addFilter(_DeviceGuess())

#: the module whose ``extract_model_from_parallel`` (accelerate's and transformers'
#: ``unwrap_model``: every loss, save and merge) imports deepspeed whenever it is installed
_UNWRAP = "accelerate.utils.other"


def _unwrap_without_importing(module: Any) -> None:
    """Make ``module`` (``accelerate.utils.other``) see DeepSpeed as available only once it
    is imported. ``extract_model_from_parallel`` imports deepspeed, when it is installed, just
    to ask whether the model is a ``DeepSpeedEngine``; none can be until deepspeed is
    imported, so the answer is the same, and a run that does not use DeepSpeed (``--parallel
    ddp``, one process, ``martlet export``) never imports it (seconds of start-up, and its
    notices)."""
    available = getattr(module, "is_deepspeed_available", None)
    if available is None or getattr(available, "_martlet_lazy", False):
        return

    def is_deepspeed_available() -> bool:
        return "deepspeed" in sys.modules and available()

    is_deepspeed_available._martlet_lazy = True  # type: ignore[attr-defined]
    module.is_deepspeed_available = is_deepspeed_available


class _WhenImported:
    """A meta-path finder that applies :func:`_unwrap_without_importing` to ``_UNWRAP`` right
    after it is first executed (it finds nothing itself; accelerate is not imported here)."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != _UNWRAP:
            return None
        sys.meta_path.remove(self)  # once; and the finders below find the real module
        from importlib.util import find_spec

        spec = find_spec(name)
        loader = getattr(spec, "loader", None)
        execute = getattr(loader, "exec_module", None)
        if execute is None:
            return spec

        def exec_module(module: Any) -> None:
            execute(module)
            _unwrap_without_importing(module)

        loader.exec_module = exec_module  # type: ignore[union-attr]
        return spec


if _UNWRAP in sys.modules:  # imported before the plugins were loaded (the Python API)
    _unwrap_without_importing(sys.modules[_UNWRAP])
elif not any(isinstance(f, _WhenImported) for f in sys.meta_path):
    sys.meta_path.insert(0, _WhenImported())


@hookimpl
def martlet_parallel_strategies():
    yield ParallelRecord(
        name="deepspeed",
        impl="martlet_deepspeed.strategy:DeepSpeed",
        options="martlet_deepspeed.options:DeepSpeedOptions",
        multi_process=True,
        requires=("deepspeed",),
        capabilities=("cpu", "cuda", "adapter", "full", "resume-any-world-size"),
        summary="DeepSpeed ZeRO stages 1/2/3 (--deepspeed zero2|zero3|zero3_offload|PATH.json): "
        "optimizer state, gradients and parameters partitioned over the processes, "
        "optionally offloaded to the CPU; saves whole files",
    )
