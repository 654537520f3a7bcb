"""Fixtures for martlet-data's tests.

Every test runs with only the ``data`` plugin (plus the core) in the process-wide manager and
with ``HF_HUB_OFFLINE=1``: nothing may be downloaded from a hub.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _data_environment(monkeypatch, martlet_manager):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    martlet_manager("data")


@pytest.fixture
def write_jsonl(tmp_path: Path):
    """``write_jsonl(rows, name="data.jsonl")``: rows (dicts, or raw text lines) to a file."""

    def write(rows, name: str = "data.jsonl") -> Path:
        path = tmp_path / name
        lines = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    return write
