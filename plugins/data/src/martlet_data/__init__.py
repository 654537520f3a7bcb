"""martlet-data: dataset sources, formats, the dataset registry, embedded datasets.

The names below are imported on first use, so ``import martlet_data`` stays light::

    from martlet_data import load_datasets, to_canonical, Rows

Encoding rows (``encode_rows``) is the core's (:mod:`martlet.examples`, re-exported here);
packing and collating them is martlet-train's.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "ReadOptions": "martlet_data.options",
    "Rows": "martlet_data.rows",
    "RowStream": "martlet_data.rows",
    "BadRowError": "martlet_data.errors",
    "BadRowReport": "martlet_data.errors",
    "DataError": "martlet_data.errors",
    "EmptyDatasetError": "martlet_data.errors",
    "to_canonical": "martlet_data.formats",
    "detect_format": "martlet_data.formats",
    "parse_spec": "martlet_data.spec",
    "load_datasets": "martlet_data.loading",
    "encode_rows": "martlet_data.encode",
    "EncodedRows": "martlet_data.encode",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'martlet_data' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [*_LAZY, "__version__"]
