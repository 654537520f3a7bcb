"""Which kernels a training run switches into its model (``--kernels auto|none|NAME,...``).

Kernel records (:class:`~martlet.records.KernelRecord`) say on which devices and compute dtypes
they apply; :func:`chosen` picks them for a run and :func:`applied` enters each one's
``applied(model, device=, dtype=)`` (:class:`martlet.interfaces.Kernel`) for the length of the
training run. ``none`` runs the model's own layers; ``auto,-NAME`` every kernel that fits but
``NAME``.

Most kernels switch layers of the model. Some computations are not a layer: the output layer
fused with the loss, attention segment by segment in packed rows. A kernel offers those as
named *operations* (:data:`OPS`) for the model it is applied to (:func:`provide`), and the
plugin doing that computation — the ``sft`` loss, the training job's collator choice — asks for
one by name (:func:`provided`), using its own code where no kernel offers it. Neither side
imports the other.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from martlet.errors import ConfigError
from martlet.records import KernelRecord

#: The operations a kernel may offer (:func:`provide`), by name, with their contract.
OPS: dict[str, str] = {
    "output_cross_entropy": "fn(hidden, targets) -> loss: the summed cross-entropy (float32, "
    "a 0-d tensor) of the model's output layer applied to hidden ([n, hidden_size], the "
    "layer's input at n target positions) against targets ([n] token ids, none ignored), "
    "with gradients for hidden and for the layer's trainable weights. Offered only for a "
    "model whose logits are that layer's output unchanged. Used by the sft/pt loss.",
    "segment_attention": "fn(model) -> context manager yielding bool: while active, the model "
    "attends segment by segment inside each row, a segment starting where position_ids "
    "restart at 0, with no attention mask (True), or it could not be switched (False); on "
    "exit the model has its own attention back. Used by --packing and --padding-free.",
}

# model -> {operation name: function}, while a kernel offers them
_offered: weakref.WeakKeyDictionary[Any, dict[str, Callable[..., Any]]] = (
    weakref.WeakKeyDictionary()
)


@contextlib.contextmanager
def provide(model: Any, name: str, fn: Callable[..., Any]) -> Iterator[None]:
    """While active, :func:`provided` ``(model, name)`` (and for any wrapper of ``model``)
    returns ``fn``: a kernel's :meth:`~martlet.interfaces.Kernel.applied` offers an operation
    of :data:`OPS` this way.

    Raises:
        ValueError: ``name`` is not in :data:`OPS` (a new operation is a change to the core).
    """
    if name not in OPS:
        raise ValueError(f"{name!r} is not an operation kernels offer: one of {sorted(OPS)}")
    ops = _offered.setdefault(model, {})
    before = ops.get(name)
    ops[name] = fn
    try:
        yield
    finally:
        if before is None:
            ops.pop(name, None)
        else:
            ops[name] = before


def provided(model: Any, name: str) -> Callable[..., Any] | None:
    """The function a kernel offers as operation ``name`` for ``model``, or for a model
    ``model`` wraps (``.module`` of a DDP/FSDP/DeepSpeed wrapper, ``._orig_mod`` of a compiled
    model, ``get_base_model()`` of a PEFT model); None where none is offered."""
    todo, seen = [model], 0
    while todo and seen < 8:
        current = todo.pop(0)
        seen += 1
        try:
            fn = _offered.get(current, {}).get(name)
        except TypeError:  # not weakly referenceable
            fn = None
        if fn is not None:
            return fn
        todo += [getattr(current, a, None) for a in ("module", "_orig_mod")]
        get_base = getattr(current, "get_base_model", None)
        if callable(get_base):
            todo.append(get_base())
        todo = [t for t in todo if t is not None and t is not current]
    return None


def names(spec: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """``"a,b"``, ``["a", "b"]`` -> ``["a", "b"]``; None or empty -> ``["auto"]``."""
    items = spec.split(",") if isinstance(spec, str) else list(spec or ())
    items = [p.strip() for i in items for p in str(i).split(",") if p.strip()]
    return items or ["auto"]


def chosen(spec: Any, *, device: str, dtype: str, use: str = "train") -> list[KernelRecord]:
    """The kernel records ``--kernels`` chooses for a run on ``device`` (a device type)
    computing in ``dtype``, for ``use`` (``train``: a training run, ``infer``: an inference
    engine; a kernel's record says which it is for): ``auto`` — every installed one that fits
    and has its requirements, in name order, less those named ``-NAME`` after it
    (``auto,-fused-lora``); ``none`` — no kernel; names — those, each of which must fit.

    Raises:
        UnknownNameError: a name no installed kernel has.
        MissingDependencyError: a named kernel whose package is missing.
        ConfigError: ``auto``/``none`` mixed with names, ``-NAME`` without ``auto``, or a
            named kernel that does not apply to this device or dtype.
    """
    from martlet.manager import get_manager

    registry = get_manager().registry
    wanted = [n.lower() for n in names(spec)]
    left_out = [n[1:].strip() for n in wanted if n.startswith("-")]
    wanted = [n for n in wanted if not n.startswith("-")]
    if left_out and wanted != ["auto"]:
        raise ConfigError(
            f"--kernels {','.join(names(spec))} leaves kernels out of something other than auto",
            fix="write auto,-NAME to use every kernel that fits but NAME",
        )
    if wanted in (["auto"], ["none"]):
        if wanted == ["none"]:
            return []
        skipped = {registry.get("kernels", n).name for n in left_out}  # unknown: an error
        return [
            r
            for r in registry.records("kernels")
            if isinstance(r, KernelRecord)
            and r.name not in skipped
            and r.fits(device, dtype, use)
            and not r.missing_requirements()
        ]
    if "auto" in wanted or "none" in wanted:
        raise ConfigError(
            f"--kernels {','.join(wanted)} mixes auto or none with names",
            fix="pass auto, none, auto,-NAME, or the names of the kernels to use",
        )
    out = []
    for name in wanted:
        record = registry.get("kernels", name)
        assert isinstance(record, KernelRecord)
        if not record.fits(device, dtype, use):
            where = ", ".join(record.devices) or "any device"
            kinds = ", ".join(record.dtypes) or "any dtype"
            words = {"train": "training", "infer": "inference"}
            purposes = " and ".join(words[u] for u in record.uses)
            raise ConfigError(
                f"kernel {record.name!r} does not apply to this run",
                why=f"it is for {purposes} on {where} with {kinds}; this is "
                f"{words.get(use, use)} in {dtype} on {device}",
                fix="leave --kernels at auto (the kernels that fit), or choose another device",
            )
        if record.missing_requirements():
            record.load()  # raises MissingDependencyError with the pip command
        out.append(record)
    return out


@contextlib.contextmanager
def applied(
    model: Any, spec: Any, *, device: str, dtype: str, use: str = "train"
) -> Iterator[dict[str, int]]:
    """While active, the kernels ``spec`` chooses (:func:`chosen`) are switched into
    ``model`` (and offer their operations for it, :func:`provide`); yields ``{kernel name:
    layers switched}``, and gives the model its own layers back afterwards."""
    with contextlib.ExitStack() as stack:
        counts = {}
        for record in chosen(spec, device=device, dtype=dtype, use=use):
            kernel = record.load()()
            counts[record.name] = int(
                stack.enter_context(kernel.applied(model, device=device, dtype=dtype)) or 0
            )
        yield counts
