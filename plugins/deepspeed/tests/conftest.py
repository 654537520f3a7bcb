"""Fixtures of martlet-deepspeed's tests.

The reference runs are made once per test session, not once per pytest-xdist worker: each is
made under a file lock in a folder the workers share (the other worker waits for it rather than
making it again: on two cores that would be a whole training run more)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, Callable], Path]:
    """``shared(name, make)``: the folder ``name`` that ``make(path)`` filled, made by the
    first worker that asks for it (the others wait for it and reuse it). A ``make`` that
    fails is tried again by the next worker that asks, which then fails the same way."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    root = root / "deepspeed-shared"
    root.mkdir(exist_ok=True)

    def once(name: str, make: Callable[[Path], object]) -> Path:
        path, done = root / name, root / f"{name}.done"
        with FileLock(str(root / f"{name}.lock")):
            if not done.exists():
                if path.exists():  # a failed attempt's leftovers
                    import shutil

                    shutil.rmtree(path)
                make(path)
                done.touch()
        return path

    return once


@pytest.fixture(scope="session")
def tiny(shared: Callable[[str, Callable], Path]) -> str:
    """The SDK's tiny model folder, as the --model the runs take (one for all workers: the
    saved adapter configs name it)."""
    from martlet_sdk.tiny import tiny_model_dir

    return str(shared("tiny-model", tiny_model_dir))


@pytest.fixture(scope="session")
def deepspeed_imported() -> Callable[..., tuple[subprocess.CompletedProcess, list[str]]]:
    """``deepspeed_imported(*args)``: ``martlet ARGS`` in a fresh interpreter (the hub
    offline), and the deepspeed modules it had imported by its end."""

    def run(*args: str) -> tuple[subprocess.CompletedProcess, list[str]]:
        code = (
            "import sys\nfrom martlet.cli import main\n"
            f"try:\n    code = main({list(args)!r})\n"
            "except SystemExit as exc:\n    code = exc.code\n"
            "print('IMPORTED', [m for m in sys.modules if m.split('.')[0] == 'deepspeed'])\n"
            "sys.exit(code)"
        )
        result = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
            timeout=600,
        )
        line = [x for x in result.stdout.splitlines() if x.startswith("IMPORTED ")]
        assert line, result.stdout[-2000:] + result.stderr[-2000:]
        return result, ast.literal_eval(line[-1].removeprefix("IMPORTED "))

    return run
