"""Which device a command runs on, chosen through the accelerator records (``--device``).

``--device NAME[:INDEX]`` names an accelerator record (``cpu``, ``cuda:1``, a vendor's
``npu``); without it the first installed accelerator other than the CPU that says it is
available is used, else the CPU. The chosen implementation is asked everything device-specific
afterwards: availability and count, the ``torch.device``, the preferred dtype (what ``auto``
precision becomes, :mod:`martlet.precision`), seeding, and its optional ``prepare()`` — an import
that must happen first (``torch_npu``) — is called once here. In a launched run (torchrun,
``--nproc-per-node``: ``LOCAL_RANK`` set) without a device index, each process computes on the
device of its local rank (:attr:`Placement.torch_device`: ``npu:1`` for local rank 1). So a
vendor's package with one accelerator record makes every command run on its device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from martlet.errors import ConfigError, MartletError, UnknownNameError


@dataclass(frozen=True)
class Placement:
    """The accelerator a command runs on: its record's ``name``, its implementation and the
    device ``index`` (None: the default one)."""

    name: str
    accelerator: Any
    index: int | None = None
    #: the device a launched process uses when ``--device`` names no index: its
    #: ``LOCAL_RANK`` (torchrun and ``--nproc-per-node`` set it), where there are several
    local_index: int | None = None

    @property
    def device_type(self) -> str:
        """The ``torch.device`` type (``cpu``, ``cuda``, ...)."""
        return str(self.accelerator.device_type)

    @property
    def torch_device(self) -> str:
        """What torch and ``device_map`` take: ``cpu``, ``cuda``, ``cuda:1``; in a launched
        process without an index, the device of its local rank (``npu:1`` for rank 1)."""
        index = self.index if self.index is not None else self.local_index
        if index is None or self.device_type == "cpu":
            return self.device_type
        return f"{self.device_type}:{index}"

    @property
    def spec(self) -> str:
        """The ``--device`` value that chooses this again: ``cuda:1``, ``acme-npu``."""
        return self.name if self.index is None else f"{self.name}:{self.index}"

    def seed(self, seed: int) -> None:
        """Seed this device kind's generators (the accelerator's ``manual_seed``)."""
        self.accelerator.manual_seed(seed)


def best() -> tuple[str, Any]:
    """The first installed accelerator (by name) other than the CPU that is available, else the
    CPU's: ``(record name, implementation)``. A broken vendor plugin is passed over."""
    from martlet.manager import get_manager

    registry = get_manager().registry
    for record in registry.records("accelerators"):
        if record.name == "cpu" or record.missing_requirements():
            continue
        try:
            impl = record.load()()
            if impl.is_available():
                return record.name, impl
        except Exception:  # noqa: BLE001 - a broken vendor plugin must not stop a CPU run
            continue
    return "cpu", _cpu(registry)


def _cpu(registry: Any) -> Any:
    return registry.get("accelerators", "cpu").load()()


def place(device: str | None = None, *, fallback_on_cpu: bool = False) -> Placement:
    """The :class:`Placement` for ``--device`` (None or ``auto``: :func:`best`).

    Raises:
        UnknownNameError: no installed accelerator has that name (with the installed ones).
        ConfigError: a malformed index, or a device that is not available here (unless
            ``fallback_on_cpu``: then a warning and the CPU).
    """
    from martlet.manager import get_manager

    text = (device or "").strip()
    if text.lower() in ("", "auto"):
        name, impl = best()
        return _prepared(_launched(Placement(name, impl)))
    name, _, index_text = text.partition(":")
    registry = get_manager().registry
    if index_text and not index_text.isdigit():
        raise ConfigError(
            f"--device {text}: {index_text!r} is not a device index",
            fix=f"e.g. --device {name}:0",
        )
    index = int(index_text) if index_text else None
    try:
        record = registry.get("accelerators", name)
    except UnknownNameError:
        if not fallback_on_cpu:
            raise
        installed = ", ".join(registry.names("accelerators"))
        why = f"no accelerator named {name!r} is installed (installed: {installed})"
        record = impl = None
    else:
        missing = record.missing_requirements()
        impl = None if missing else record.load()()
        why = None
        if missing:
            why = (
                f"the {record.name} accelerator needs {', '.join(missing)}, which is not installed"
            )
        elif not impl.is_available():
            why = f"no {record.name} device is available on this machine"
        elif index is not None and index >= impl.device_count():
            count = impl.device_count()
            why = f"there are {count} {record.name} devices (0-based), not {index + 1}"
    if why is None:
        return _prepared(_launched(Placement(record.name, impl, index)))
    if fallback_on_cpu:
        print(f"warning: {why}: running on the CPU (--fallback-on-cpu)", flush=True)
        return _prepared(Placement("cpu", _cpu(registry)))
    install = ""
    if record is not None and record.missing_requirements():
        quoted = " ".join(f"'{req}'" for req in record.missing_requirements())
        install = f"install it (pip install {quoted}; see the {record.origin} plugin's README), "
    raise ConfigError(
        f"--device {text} cannot be used",
        why=why,
        fix=f"{install}pass --device cpu (or leave --device out to use the best available), or "
        "--fallback-on-cpu true to run on the CPU when the device is missing",
    )


def _launched(placement: Placement) -> Placement:
    """In a process of a launched run (``LOCAL_RANK`` set) that named no device index: rank
    ``k`` of a node computes on device ``k`` of its kind, where the kind has several. More
    ranks on a node than devices is an error; with one device, the ranks share it."""
    import os

    local_rank = os.environ.get("LOCAL_RANK", "").strip()
    if placement.index is not None or placement.device_type == "cpu" or not local_rank.isdigit():
        return placement
    count = placement.accelerator.device_count()
    if count <= 1:
        return placement
    if int(local_rank) >= count:
        raise ConfigError(
            f"local rank {local_rank} has no {placement.name} device of its own",
            why=f"this node has {count} {placement.name} devices and each launched process "
            "computes on the device of its local rank (0-based)",
            fix=f"launch at most {count} processes per node (--nproc-per-node {count})",
        )
    return Placement(placement.name, placement.accelerator, None, int(local_rank))


#: the accelerators whose ``prepare()`` has run in this process (it runs once, however often a
#: command asks where it runs)
_PREPARED: set[str] = set()


def _prepared(placement: Placement) -> Placement:
    prepare = getattr(placement.accelerator, "prepare", None)
    if prepare is not None and placement.name not in _PREPARED:
        try:
            prepare()
        except MartletError:
            raise
        except Exception as exc:
            raise MartletError(
                f"accelerator {placement.name!r} failed to prepare its device",
                why=f"{type(exc).__name__}: {exc}",
                fix="check the device's own libraries (its plugin's README)",
                cause=exc,
            ) from exc
        _PREPARED.add(placement.name)
    return placement
