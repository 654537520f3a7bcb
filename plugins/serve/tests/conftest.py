"""Fixtures for the server's tests: tiny models and adapters on disk, and `martlet deploy` run
as a real subprocess on a free 127.0.0.1 port (``--port 0``; the port is read from what it
prints), talked to over real HTTP."""

from __future__ import annotations

import http.client
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

CLI = "import sys; from martlet.cli import main; sys.exit(main())"
KEY = "sk-martlet-test-key"
JWT_SECRET = "a-test-secret-that-is-at-least-32-bytes-long"
AUDIENCE = "martlet-tests"
API_KEY_ENV = "MARTLET_API_KEY"


class Server:
    """A `martlet deploy` (or `infer --port`) subprocess.

    ``health`` holds every ``/health`` answer seen while it started (status, body), ``during_load``
    the answers of ``GET /v1/models`` while it loaded."""

    def __init__(
        self,
        *args: str,
        command: str = "deploy",
        key: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        extra = dict(env or {})
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
        env.pop(API_KEY_ENV, None)  # only a test's own key
        env.update(extra)
        self.key = key
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CLI, command, "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.stdout: queue.Queue[str] = queue.Queue()
        self.out_lines: list[str] = []
        self.err_lines: list[str] = []
        threading.Thread(target=self._read, args=(self.proc.stdout, True), daemon=True).start()
        threading.Thread(target=self._read, args=(self.proc.stderr, False), daemon=True).start()
        first = self.wait_line("answers 503 until it is ready")
        self.port = int(re.search(r"127\.0\.0\.1:(\d+)/health", first).group(1))
        self.health: list[tuple[int, Any]] = []
        self.during_load: list[tuple[int, Any]] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            status, _, body = self.request("GET", "/health", auth=False)
            self.health.append((status, json.loads(body)))
            if status == 200:
                break
            status, _, body = self.request("GET", "/v1/models")
            self.during_load.append((status, json.loads(body)))
            time.sleep(0.02)
        self.banner = self.wait_line("martlet deploy: serving")

    def _read(self, stream: Any, out: bool) -> None:
        for line in stream:
            (self.out_lines if out else self.err_lines).append(line)
            if out:
                self.stdout.put(line)

    def wait_line(self, text: str, timeout: float = 120) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.stdout.get(timeout=0.1)
            except queue.Empty:
                if self.proc.poll() is not None and self.stdout.empty():
                    break
                continue
            if text in line:
                return line
        raise AssertionError(
            f"the server never printed {text!r} (exit {self.proc.poll()}):\n"
            + "".join(self.out_lines + self.err_lines)[-4000:]
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def headers(self, auth: bool = True) -> dict[str, str]:
        out = {"Content-Type": "application/json"}
        if auth and self.key:
            out["Authorization"] = f"Bearer {self.key}"
        return out

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        auth: bool = True,
        headers: dict[str, str] | None = None,
        timeout: float = 60,
    ) -> tuple[int, dict[str, str], bytes]:
        """One HTTP request on a fresh connection: ``(status, headers, body)``."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
            conn.request(method, path, body=data, headers={**self.headers(auth), **(headers or {})})
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def client(self, api_key: str | None = None) -> Any:
        """The official OpenAI client on this server (no retries)."""
        import openai

        return openai.OpenAI(
            base_url=self.url, api_key=api_key or self.key or "none", max_retries=0, timeout=60
        )

    @property
    def stderr(self) -> str:
        return "".join(self.err_lines)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


def assert_envelope(body: bytes | dict, status: int | None = None) -> dict[str, Any]:
    """The error of an OpenAI error envelope (checked to have exactly its four fields)."""
    data = json.loads(body) if isinstance(body, (bytes, str)) else body
    assert set(data) == {"error"}, data
    error = data["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and error["message"], error
    assert isinstance(error["type"], str) and error["type"], error
    assert "Traceback" not in error["message"]
    return error


def save_tiny(path: Path, **config_overrides: Any) -> Path:
    """The SDK's tiny model and tokenizer at ``path``, with ``config_overrides``."""
    from martlet_sdk.tiny import tiny_model, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    model = tiny_model(seed=0, tokenizer=tokenizer, **config_overrides)
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


def save_lora(path: Path, seed: int = 1, **config_overrides: Any) -> Path:
    """A LoRA adapter for the tiny model (random, non-zero weights: it changes the answers),
    saved by PEFT at ``path``."""
    import torch
    from martlet_sdk.tiny import tiny_model, tiny_tokenizer
    from peft import LoraConfig, get_peft_model

    model = tiny_model(seed=0, tokenizer=tiny_tokenizer(), **config_overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        lora = get_peft_model(
            model,
            LoraConfig(
                r=4, lora_alpha=32, target_modules=["q_proj", "v_proj"], init_lora_weights=False
            ),
        )
    lora.save_pretrained(path, safe_serialization=True)
    return path


@pytest.fixture
def envelope() -> Any:
    """:func:`assert_envelope`: checks an OpenAI error envelope and returns its error."""
    return assert_envelope


@pytest.fixture
def jwt_token() -> Any:
    """Makes an HS256 token for the main server: ``jwt_token(exp=None, aud="x", key=...)``
    (a claim given as None is left out)."""
    import jwt

    def make(key: str = JWT_SECRET, **claims: Any) -> str:
        payload = {"sub": "tester", "aud": AUDIENCE, "exp": int(time.time()) + 300, **claims}
        payload = {k: v for k, v in payload.items() if v is not None}
        return jwt.encode(payload, key, algorithm="HS256")

    return make


@pytest.fixture
def start_server() -> Any:
    """Starts a :class:`Server` (``start_server(*flags, command="deploy", key=None)``);
    every one started is stopped at the end of the test."""
    started: list[Server] = []

    def start(*args: str, **kwargs: Any) -> Server:
        started.append(Server(*args, **kwargs))
        return started[-1]

    yield start
    for s in started:
        s.stop()


@pytest.fixture(scope="session")
def tiny_lora_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_lora(tmp_path_factory.mktemp("tiny-lora"))


@pytest.fixture(scope="session")
def long_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with an 8192-token context: an answer long enough to still be running
    while a test does something else (``ignore_eos``)."""
    return save_tiny(tmp_path_factory.mktemp("tiny-long"), max_position_embeddings=8192)


@pytest.fixture(scope="session")
def server(tiny_model_dir: Path, tiny_lora_dir: Path) -> Any:
    """The main server: the tiny model as `tiny`, an adapter `tiny-lora`, an API key and
    HS256 JWTs for one audience, small bounds (max_tokens 32, n 4)."""
    started = Server(
        "--model", str(tiny_model_dir),
        "--served-model-name", "tiny",
        "--adapters", f"tiny-lora={tiny_lora_dir}",
        "--api-key", KEY,
        "--jwt-secret", JWT_SECRET,
        "--jwt-audience", AUDIENCE,
        "--max-tokens-limit", "32",
        "--max-n", "4",
        "--max-top-logprobs", "5",
        "--max-batch-size", "8",
        key=KEY,
    )  # fmt: skip
    yield started
    started.stop()


@pytest.fixture(scope="module")
def busy_server(long_model_dir: Path) -> Any:
    """One request decoded at a time and none waiting, 2 KiB bodies, no authentication, the
    8192-token tiny model."""
    started = Server(
        "--model", str(long_model_dir),
        "--served-model-name", "long",
        "--max-batch-size", "1",
        "--max-queued-requests", "0",
        "--max-body-bytes", "2048",
        "--max-tokens-limit", "8000",
    )  # fmt: skip
    yield started
    started.stop()
