"""Read the key/value header of a GGUF file (standard library only, no tensor data).

Enough to recognise a file (``general.architecture``, ``general.name``, the vocabulary size)
without importing numpy or the ``gguf`` package, and to say clearly when a file is not GGUF.
Arrays are summarised by their length, except short arrays of scalars.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, BinaryIO

from martlet.errors import MartletError

MAGIC = b"GGUF"
_SCALARS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_STRING, _ARRAY = 8, 9


class GgufArray(list):
    """An array value: its items when short and scalar, else empty with ``length`` set."""

    length: int = 0


def is_gguf(path: str | Path) -> bool:
    """Whether ``path`` is a file that starts with the GGUF magic bytes."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == MAGIC
    except OSError:
        return False


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The header's key/value pairs.

    Raises:
        MartletError: the file is missing, unreadable, not GGUF, or its header is cut short.
    """
    file = Path(path)
    try:
        with open(file, "rb") as f:
            if f.read(4) != MAGIC:
                raise MartletError(
                    f"{file} is not a GGUF file",
                    why="it does not start with the GGUF magic bytes",
                    fix="check the path; GGUF files are written by llama.cpp and its converters",
                )
            version = _read(f, "<I")
            if version < 2:
                raise MartletError(
                    f"{file} is GGUF version {version}, which is not supported",
                    fix="convert it again with a current llama.cpp",
                )
            _tensor_count, kv_count = _read(f, "<Q"), _read(f, "<Q")
            out: dict[str, Any] = {"GGUF.version": version}
            for _ in range(kv_count):
                key = _string(f)
                out[key] = _value(f, _read(f, "<I"))
            return out
    except MartletError:
        raise
    except FileNotFoundError:
        raise MartletError(f"GGUF file {str(file)!r} not found", fix="check the path") from None
    except (OSError, struct.error, UnicodeDecodeError, ValueError) as exc:
        raise MartletError(
            f"cannot read the GGUF header of {file}",
            why=f"{type(exc).__name__}: {exc}",
            fix="the file may be truncated (an interrupted download?); fetch it again",
            cause=exc,
        ) from exc


def _read(f: BinaryIO, fmt: str) -> Any:
    size = struct.calcsize(fmt)
    data = f.read(size)
    if len(data) != size:
        raise ValueError("unexpected end of file")
    return struct.unpack(fmt, data)[0]


def _string(f: BinaryIO) -> str:
    length = _read(f, "<Q")
    data = f.read(length)
    if len(data) != length:
        raise ValueError("unexpected end of file")
    return data.decode("utf-8")


def _value(f: BinaryIO, kind: int) -> Any:
    if kind in _SCALARS:
        return _read(f, _SCALARS[kind])
    if kind == _STRING:
        return _string(f)
    if kind == _ARRAY:
        item_kind, length = _read(f, "<I"), _read(f, "<Q")
        arr = GgufArray()
        arr.length = length
        if item_kind in _SCALARS:
            size = struct.calcsize(_SCALARS[item_kind])
            if length <= 64:
                arr.extend(_read(f, _SCALARS[item_kind]) for _ in range(length))
            else:
                f.seek(size * length, 1)
        elif item_kind == _STRING:
            for _ in range(length):
                f.seek(_read(f, "<Q"), 1)
        else:
            for _ in range(length):
                _value(f, item_kind)
        return arr
    raise ValueError(f"unknown GGUF value type {kind}")
