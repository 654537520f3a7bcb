"""Fixtures of martlet-rewards' tests: a real HTTP reward server on 127.0.0.1 (a thread in the
test process, answering as each test tells it), and a reward model trained for real by
``martlet rlhf --method rm`` on the SDK's tiny model (once per session)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from martlet_sdk.testing import run_cli

#: an answer of the server: (status, headers, body); a body that is not bytes is sent as JSON
Answer = tuple[int, dict[str, str], Any]


def by_length(request: dict[str, Any]) -> Answer:
    """The default answer: each completion's reward is its length in characters (text or
    messages), null for an empty one."""
    rewards = []
    for completion in request["completions"]:
        text = (
            completion
            if isinstance(completion, str)
            else "".join(m.get("content") or "" for m in completion)
        )
        rewards.append(float(len(text)) if text else None)
    return 200, {}, {"rewards": rewards}


@dataclass
class RewardServer:
    """The server: ``url``; ``requests`` (each body as JSON, with its headers); ``answers``,
    answers given one per request before ``answer`` (a function of the request) takes over."""

    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    answer: Callable[[dict[str, Any]], Answer] = by_length


@pytest.fixture
def reward_server() -> Iterator[RewardServer]:
    state = RewardServer()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state.requests.append(body)
            state.headers.append(dict(self.headers))
            status, headers, payload = state.answers.pop(0) if state.answers else state.answer(body)
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", **headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/reward"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def rm_run(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory of ``martlet rlhf --method rm`` (one step on the tiny model)."""
    out = tmp_path_factory.mktemp("rm") / "run"
    result = run_cli(
        "rlhf", "--method", "rm", "--model", str(tiny_model_dir), "--dataset", "sample-dpo#8",
        "--max-steps", "1", "--output-dir", str(out), "--disable-progress-bar",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return out
