"""Choosing a quantizer for a command, and the quantizer's work around a model load.

``--quant-method NAME --quant-bits N`` names a quantizer record
(:class:`~martlet.records.QuantizerRecord`, kind ``quantizers``). :func:`chosen` checks,
before anything slow happens, that the quantizer is installed, works at the stage asked for
(``load``, ``export``), supports the width, and has the CUDA GPU its record needs; the
commands then call it through :func:`martlet.load_model` (``quant_method=``) or ``martlet
export``. :func:`prequantized` finds the record for a checkpoint quantized elsewhere, from the
``quant_method`` of its ``quantization_config``. :func:`weight_bytes` counts what a model's
weights hold in memory, quantized tensors included. :func:`folder_load_options` and
:func:`folder_load_errors` are what a model loader of the folders one quantizer writes does
with the load options and errors. No heavy
import at module level.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from martlet.errors import ConfigError, MartletError, brief
from martlet.records import QuantizerRecord

STAGES = {"load": "at load time", "export": "at export time", "prequantized": "on checkpoints"}


@dataclass
class Chosen:
    """A quantizer chosen for one command: its record, an instance, the width, its options."""

    record: QuantizerRecord
    quantizer: Any
    bits: int | None
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.record.name

    def describe(self) -> str:
        """``bnb 4-bit`` (what a run prints and records)."""
        return f"{self.record.name} {self.bits}-bit" if self.bits else self.record.name


def _with_stage(stage: str) -> list[str]:
    from martlet.manager import get_manager

    return sorted(r.name for r in get_manager().registry.records("quantizers") if stage in r.stages)


def chosen(
    method: str,
    bits: int | None,
    *,
    stage: str,
    options: dict[str, Any] | None = None,
    cuda: bool | None = None,
) -> Chosen:
    """The quantizer ``method`` for ``stage`` at ``bits``, checked and instantiated.

    ``bits`` None takes the record's only width; ``cuda`` says whether a CUDA GPU is there
    (None: ask torch).

    Raises:
        UnknownNameError: no installed quantizer has that name (naming the package that has).
        ConfigError: it does not work at ``stage``, or not at ``bits``.
        MartletError: it needs a CUDA GPU and there is none.
        MissingDependencyError: its library is not installed (with the pip command).
    """
    from martlet.manager import get_manager

    record = get_manager().registry.get("quantizers", method)
    if stage not in record.stages:
        others = _with_stage(stage)
        raise ConfigError(
            f"the {record.name} quantizer does not work {STAGES.get(stage, stage)}",
            why=f"it works {', '.join(STAGES.get(s, s) for s in record.stages)}",
            fix=f"pick one that does: {', '.join(others)}"
            if others
            else f"install a quantizer that works {STAGES.get(stage, stage)}",
        )
    if bits is None and len(record.bits) == 1:
        bits = record.bits[0]
    if bits is None and record.bits:
        widths = ", ".join(map(str, record.bits))
        raise ConfigError(
            f"--quant-method {record.name} needs --quant-bits",
            fix=f"pass --quant-bits with one of: {widths}",
        )
    if bits is not None and record.bits and bits not in record.bits:
        widths = " or ".join(map(str, record.bits))
        raise ConfigError(
            f"{record.name} cannot quantize to {bits} bits",
            why=f"the {record.name} quantizer supports {widths} bits",
            fix=f"pass --quant-bits {record.bits[0]}"
            + (f" (or {', '.join(map(str, record.bits[1:]))})" if len(record.bits) > 1 else ""),
        )
    if record.needs_cuda:
        if cuda is None:
            import torch

            cuda = torch.cuda.is_available()
        if not cuda:
            raise MartletError(
                f"the {record.name} quantizer needs a CUDA GPU",
                why="its kernels exist only for CUDA, and this machine has no CUDA device",
                fix="run it on a machine with an NVIDIA GPU, or pick a quantizer that runs "
                "here: " + ", ".join(_runs_here(stage)),
            )
    quantizer = record.load()()
    return Chosen(record, quantizer, bits, dict(options or {}))


def _runs_here(stage: str) -> list[str]:
    from martlet.manager import get_manager

    return sorted(
        r.name
        for r in get_manager().registry.records("quantizers")
        if stage in r.stages and not r.needs_cuda
    ) or ["(none installed)"]


def prequantized(config: Any) -> QuantizerRecord | None:
    """The installed record that loads a checkpoint quantized elsewhere: ``config`` is a
    model's config (or its ``quantization_config``); its ``quant_method`` names the record
    (or one of its aliases) that claims the ``prequantized`` stage. None when there is no
    quantization or no such record (transformers then loads it itself, if it can)."""
    from martlet.manager import get_manager

    qc = getattr(config, "quantization_config", config)
    if qc is None:
        return None
    method = qc.get("quant_method") if isinstance(qc, dict) else getattr(qc, "quant_method", None)
    method = getattr(method, "value", method)  # transformers' QuantizationMethod enum
    if not method:
        return None
    record = get_manager().registry.find("quantizers", str(method).lower())
    if record is None or "prequantized" not in record.stages:
        return None
    return record


def weight_bytes(model: Any) -> int:
    """Bytes the weights of ``model`` hold in memory: its parameters and buffers, and the
    tensors its modules keep outside them (hqq keeps scales and zeros in a dict), counting a
    quantized tensor's packed storage rather than its nominal dtype (a tensor subclass that
    keeps inner tensors, optimum-quanto's, is counted by them). Each storage counts once."""
    import torch

    seen: set[int] = set()
    total = sum(_bytes(t, seen) for t in [*model.parameters(), *model.buffers()])
    for module in model.modules():
        for value in vars(module).values():
            for t in value.values() if isinstance(value, dict) else (value,):
                if isinstance(t, torch.Tensor):
                    total += _bytes(t, seen)
    return total


def _bytes(t: Any, seen: set[int]) -> int:
    if getattr(type(t), "__tensor_flatten__", None) is not None:
        names, _ = t.__tensor_flatten__()
        return sum(_bytes(getattr(t, n), seen) for n in names)
    try:
        key = t.untyped_storage().data_ptr()
    except (RuntimeError, NotImplementedError):
        key = id(t)
    if key in seen and key != 0:
        return 0
    seen.add(key)
    return int(t.numel() * t.element_size())


#: the model options a loader of quantized folders takes (:func:`folder_load_options`)
FOLDER_OPTIONS = ("torch_dtype", "trust_remote_code", "device_map", "attn_impl", "revision")


def folder_load_options(method: str, source: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """What a model loader of the folders quantizer ``method`` writes (its own layout, on one
    device) loads them with: ``torch_dtype``, ``device``, ``attn_impl``, ``trust_remote_code``.
    Options it does not take are refused (``quantization_config``: the folder is quantized
    already); ``device_map`` becomes one device (an index: that CUDA device; ``auto``: the
    loader's default)."""
    unknown = sorted(k for k, v in options.items() if k not in FOLDER_OPTIONS and v is not None)
    if "quantization_config" in unknown:
        raise ConfigError(
            f"{source} is quantized with {method} already",
            fix="leave out --quant-method: the folder loads quantized as it is",
        )
    if unknown:
        raise ConfigError(
            f"the {method} model loader does not take {', '.join(unknown)}",
            why=f"it loads causal language models {method} quantized, on one device",
        )
    device = options.get("device_map")
    if isinstance(device, int) and not isinstance(device, bool):
        device = f"cuda:{device}"
    if device == "auto":
        device = None
    if device is not None and not isinstance(device, str):
        raise ConfigError(
            f"the {method} model loader puts the model on one device, not {device!r}",
            fix="pass --device-map cpu (or cuda:0), or leave it out",
        )
    return {
        "torch_dtype": options.get("torch_dtype"),
        "device": device,
        "attn_impl": options.get("attn_impl"),
        "trust_remote_code": bool(options.get("trust_remote_code", False)),
    }


@contextlib.contextmanager
def folder_load_errors(method: str, folder: Any) -> Iterator[None]:
    """An error other than a MartletError while loading the ``method`` folder ``folder``,
    reported as one (with its cause)."""
    try:
        yield
    except MartletError:
        raise
    except Exception as exc:  # noqa: BLE001 - reported with its cause
        raise MartletError(
            f"cannot load the {method} model in {folder}", why=brief(exc), cause=exc
        ) from exc
