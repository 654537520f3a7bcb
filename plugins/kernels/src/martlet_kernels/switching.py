"""Giving a model's layers another forward for the length of a training run.

The compiled RMSNorm (:mod:`martlet_kernels.cpu_kernels`) and the lean MLP
(:mod:`martlet_kernels.lean_mlp`) replace the ``forward`` of layers whose class computes exactly
what a transformers reference class does — checked by comparing the source of the two
``forward`` methods, not by name, so a model family that copied Llama's layer qualifies and one
that changed it does not. The new forward is an instance attribute, so :func:`restore` gives the
layer its own back.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import types
from collections.abc import Callable, Iterable, Iterator
from typing import Any


@functools.cache
def _source(reference: str) -> str | None:
    """The source of ``module:Class``'s ``forward``, or None where it cannot be read."""
    module, _, name = reference.partition(":")
    try:
        return inspect.getsource(getattr(importlib.import_module(module), name).forward)
    except (ImportError, AttributeError, OSError, TypeError):
        return None


@functools.cache
def forward_is(cls: type, reference: str) -> bool:
    """Whether ``cls.forward`` is, word for word, the ``forward`` of ``reference``
    (``"module:Class"``)."""
    expected = _source(reference)
    try:
        return expected is not None and inspect.getsource(cls.forward) == expected
    except (OSError, TypeError):
        return False


def switch(modules: Iterable[Any], forward: Callable[..., Any]) -> list[Any]:
    """Give each of ``modules`` ``forward`` (bound to it); returns them."""
    switched = list(modules)
    for module in switched:
        module.forward = types.MethodType(forward, module)
    return switched


def restore(modules: Iterable[Any]) -> None:
    """Give ``modules`` (switched by :func:`switch`) their own forward again."""
    for module in modules:
        vars(module).pop("forward", None)


@contextlib.contextmanager
def switched(modules: list[Any]) -> Iterator[int]:
    """While active, ``modules`` (just switched by :func:`switch`) keep their new forward;
    yields how many there are, and gives them their own forward back afterwards."""
    try:
        yield len(modules)
    finally:
        restore(modules)
