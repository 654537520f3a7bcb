"""martlet-hf: Hugging Face and GGUF model loading, the model registry, chat templates and the
embedded default model for Martlet.

Importing this package is light; what is named below is imported on first use::

    from martlet_hf import ModelOptions, TemplateOptions, match_family, download
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "ModelOptions": "martlet_hf.options",
    "TemplateOptions": "martlet_hf.options",
    "ChatTemplate": "martlet_hf.templates",
    "TemplateError": "martlet_hf.templates",
    "HfLoader": "martlet_hf.loaders",
    "GgufLoader": "martlet_hf.loaders",
    "ModelLoadError": "martlet_hf.loaders",
    "convert_gguf": "martlet_hf.loaders",
    "match_family": "martlet_hf.families",
    "FamilyMatch": "martlet_hf.families",
    "download": "martlet_hf.hub",
    "HubError": "martlet_hf.hub",
    "locate": "martlet_hf.locate",
    "Location": "martlet_hf.locate",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'martlet_hf' has no attribute {name!r}")


__all__ = [*_EXPORTS, "__version__"]
