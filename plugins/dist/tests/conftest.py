"""Fixtures of martlet-dist's tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny(tiny_model_dir: Path) -> str:
    """The SDK's tiny model folder, as the --model the runs take."""
    return str(tiny_model_dir)
