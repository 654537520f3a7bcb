"""`martlet infer` and `martlet deploy`, and the same engines in-process:
``from martlet_serve import InferEngine, InferRequest, RequestConfig`` (:mod:`martlet_serve.api`).

Nothing heavy is imported with the package (its plugin module is imported by every command).
"""

from __future__ import annotations

from typing import Any

__all__ = ["InferEngine", "InferRequest", "RequestConfig", "Response"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from martlet_serve import api

        return getattr(api, name)
    raise AttributeError(f"module 'martlet_serve' has no attribute {name!r}")
