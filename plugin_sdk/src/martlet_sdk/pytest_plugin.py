"""Pytest fixtures for plugin authors (registered through the ``pytest11`` entry point).

* ``martlet_manager`` — a factory: ``martlet_manager("my-plugin", my_module)`` returns a fresh
  plugin manager holding only those plugins (and the core's commands), made the process-wide
  one for the rest of the test so the CLI and ``martlet.registry`` see exactly them.
* ``martlet_cli`` — ``martlet_cli("plugins", "--json")`` runs the CLI in-process and returns a
  :class:`~martlet_sdk.runner.CliResult` (``exit_code``, ``stdout``, ``stderr``).
* ``tiny_tokenizer``, ``tiny_model`` — the offline tiny tokenizer and a fresh ~300k-parameter
  Llama model (see :mod:`martlet_sdk.tiny`).
* ``tiny_model_dir`` — the tiny model saved as a Hugging Face folder (once per session).

This module imports no heavy library; the model fixtures import torch when used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture
def martlet_manager() -> Iterator[Callable[..., Any]]:
    from martlet.manager import set_manager

    from martlet_sdk.isolation import isolated_manager

    previous: list[Any] = []

    def make(*plugins: Any, builtins: bool = True) -> Any:
        manager = isolated_manager(*plugins, builtins=builtins)
        previous.append(set_manager(manager))
        return manager

    yield make
    if previous:
        set_manager(previous[0])


@pytest.fixture
def martlet_cli() -> Callable[..., Any]:
    from martlet_sdk.runner import run_cli

    def run(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Any:
        return run_cli(args, input=input, env=env)

    return run


@pytest.fixture
def tiny_tokenizer() -> Any:
    from martlet_sdk.tiny import tiny_tokenizer as make

    return make()


@pytest.fixture
def tiny_model(tiny_tokenizer: Any) -> Any:
    from martlet_sdk.tiny import tiny_model as make

    return make(tokenizer=tiny_tokenizer)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from martlet_sdk.tiny import tiny_model_dir as make

    return make(tmp_path_factory.mktemp("tiny-model"))
