"""Which kernels a training run switches into its model (``--kernels auto|none|NAME,...``).

Kernel records (:class:`~martlet.records.KernelRecord`) say on which devices and compute dtypes
they apply; :func:`chosen` picks them for a run and :func:`applied` enters each one's
``applied(model, device=, dtype=)`` (:class:`martlet.interfaces.Kernel`) for the length of the
training loop. ``none`` runs the model's own layers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from martlet.errors import ConfigError
from martlet.records import KernelRecord


def names(spec: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """``"a,b"``, ``["a", "b"]`` -> ``["a", "b"]``; None or empty -> ``["auto"]``."""
    items = spec.split(",") if isinstance(spec, str) else list(spec or ())
    items = [str(i).strip() for i in items if str(i).strip()]
    return items or ["auto"]


def chosen(spec: Any, *, device: str, dtype: str) -> list[KernelRecord]:
    """The kernel records ``--kernels`` chooses for a run on ``device`` (a device type)
    computing in ``dtype``: ``auto`` — every installed one that fits and has its requirements,
    in name order; ``none`` — no kernel; names — those, each of which must fit.

    Raises:
        UnknownNameError: a name no installed kernel has.
        MissingDependencyError: a named kernel whose package is missing.
        ConfigError: ``auto``/``none`` mixed with names, or a named kernel that does not apply
            to this device or dtype.
    """
    from martlet.manager import get_manager

    registry = get_manager().registry
    wanted = [n.lower() for n in names(spec)]
    if wanted in (["auto"], ["none"]):
        if wanted == ["none"]:
            return []
        return [
            r
            for r in registry.records("kernels")
            if isinstance(r, KernelRecord)
            and r.fits(device, dtype)
            and not r.missing_requirements()
        ]
    if "auto" in wanted or "none" in wanted:
        raise ConfigError(
            f"--kernels {','.join(wanted)} mixes auto or none with names",
            fix="pass auto, none, or the names of the kernels to use",
        )
    out = []
    for name in wanted:
        record = registry.get("kernels", name)
        assert isinstance(record, KernelRecord)
        if not record.fits(device, dtype):
            where = ", ".join(record.devices) or "any device"
            kinds = ", ".join(record.dtypes) or "any dtype"
            raise ConfigError(
                f"kernel {record.name!r} does not apply to this run",
                why=f"it runs on {where} with {kinds}; this run computes in {dtype} on {device}",
                fix="leave --kernels at auto (the kernels that fit), or choose another device",
            )
        if record.missing_requirements():
            record.load()  # raises MissingDependencyError with the pip command
        out.append(record)
    return out


@contextlib.contextmanager
def applied(model: Any, spec: Any, *, device: str, dtype: str) -> Iterator[dict[str, int]]:
    """While active, the kernels ``spec`` chooses (:func:`chosen`) are switched into
    ``model``; yields ``{kernel name: layers switched}``, and gives the model its own layers
    back afterwards."""
    with contextlib.ExitStack() as stack:
        counts = {}
        for record in chosen(spec, device=device, dtype=dtype):
            kernel = record.load()()
            counts[record.name] = int(
                stack.enter_context(kernel.applied(model, device=device, dtype=dtype)) or 0
            )
        yield counts
