"""The dataset selector: ``[HUB::]NAME_OR_PATH[:SUBSET[/SUBSET...]][#N]`` (ms-swift's syntax).

* ``HUB::`` — ``hf::`` (or ``huggingface::``) or ``ms::`` (or ``modelscope::``) forces the hub.
* ``NAME_OR_PATH`` — a registered dataset name, a local file or folder, or a hub id ``org/name``.
* ``:SUBSET`` — a subset (a hub "config"); several are joined with ``/`` and concatenated.
* ``#N`` — use N rows (see :func:`martlet_data.rows.select`).

A spec that names an existing file or folder is always that path, even if it holds ``:`` or
``#``; so is one whose ``#`` is followed by the rest of a file name (``data#2.jsonl``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from martlet.errors import ConfigError

#: suffixes the local source reads
SUFFIXES = (".jsonl", ".json", ".csv", ".parquet", ".txt")

_SCHEMES = {
    "hf": "huggingface",
    "huggingface": "huggingface",
    "ms": "modelscope",
    "modelscope": "modelscope",
}
_SCHEME_RE = re.compile(r"^([A-Za-z]+)::(.*)$", re.S)
_COUNT_RE = re.compile(r"^(.*)#([^#]*)$", re.S)
HUB_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def normalize_hub(hub: str | None) -> str | None:
    """``"hf"``/``"huggingface"`` -> ``"huggingface"``; ``"ms"``/``"modelscope"`` ->
    ``"modelscope"``; None stays None.

    Raises:
        ConfigError: an unknown hub.
    """
    if hub is None or hub == "":
        return None
    found = _SCHEMES.get(str(hub).strip().lower())
    if found is None:
        raise ConfigError(
            f"unknown dataset hub {hub!r}",
            fix="use huggingface (hf) or modelscope (ms)",
        )
    return found


@dataclass(frozen=True)
class DatasetSpec:
    """A parsed selector."""

    text: str
    name: str
    hub: str | None = None
    subsets: tuple[str, ...] = ()
    count: int | None = None

    @property
    def is_path(self) -> bool:
        """Whether ``name`` is an existing file or folder."""
        return os.path.exists(os.path.expanduser(self.name))

    @property
    def looks_like_path(self) -> bool:
        """An existing path, a name with a data-file suffix, or one written as a path."""
        name = self.name
        return (
            self.is_path
            or name.lower().endswith(SUFFIXES)
            or name.startswith(("/", "./", "../", "~", "."))
            or name.endswith(("/", os.sep))
        )

    @property
    def looks_like_hub_id(self) -> bool:
        return bool(HUB_ID_RE.match(self.name))


def _is_file_name(after_hash: str) -> bool:
    """Whether the text after a ``#`` is the end of a file name (``data#1.jsonl``), not ``N``."""
    text = after_hash.strip()
    return "/" in text or text.lower().endswith(SUFFIXES)


def parse_spec(spec: str) -> DatasetSpec:
    """Parse a selector.

    Raises:
        ConfigError: an empty name, an unknown ``HUB::`` prefix, or a ``#N`` that is not a
            positive integer.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(
            f"a dataset spec must be a non-empty string, got {spec!r}",
            fix="pass NAME_OR_PATH[:subset][#N], e.g. --dataset sample-sft#100",
        )
    text = spec.strip()
    if os.path.exists(os.path.expanduser(text)):
        return DatasetSpec(text=text, name=text)
    rest, hub = text, None
    match = _SCHEME_RE.match(rest)
    if match:
        hub = _SCHEMES.get(match.group(1).lower())
        if hub is None:
            raise ConfigError(
                f"unknown hub prefix {match.group(1)!r}:: in dataset spec {spec!r}",
                fix="use hf::org/name or ms::org/name",
            )
        rest = match.group(2)
    count = None
    match = _COUNT_RE.match(rest)
    if match and not _is_file_name(match.group(2)):
        rest, raw = match.group(1), match.group(2).strip()
        if not raw.isdigit() or int(raw) <= 0:
            example = rest.strip() or "sample-sft"
            raise ConfigError(
                f"#N (the row count) in dataset spec {spec!r} must be a positive integer, "
                f"got {raw!r}",
                why="#N takes N rows of the dataset (a seeded sample, or repeats when N is "
                "larger than the dataset)",
                fix=f"write NAME#N with N of 1 or more, e.g. {example}#100, or leave out '#N' "
                "to use every row",
            )
        count = int(raw)
    subsets: tuple[str, ...] = ()
    if not os.path.exists(os.path.expanduser(rest)) and ":" in rest:
        rest, _, raw_subsets = rest.partition(":")
        subsets = tuple(s.strip() for s in raw_subsets.split("/") if s.strip())
        if not subsets:
            raise ConfigError(
                f"dataset spec {spec!r} has an empty subset after ':'",
                fix="write NAME:SUBSET or leave out the ':'",
            )
    rest = rest.strip()
    if not rest:
        raise ConfigError(f"dataset spec {spec!r} names no dataset")
    return DatasetSpec(text=text, name=rest, hub=hub, subsets=subsets, count=count)
