"""`martlet deploy` from start to stop: options checked before anything loads, a model that
fails to load stops the server with the error, SIGTERM drains the request in flight and exits
0 (through `martlet infer --port`, the same server), and a third party's backend serves with
its own options (and its failures are 500s whose details stay in the log)."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import textwrap

import pytest
from martlet_sdk.contracts import CommandContract

CLI = "import sys; from martlet.cli import main; sys.exit(main())"
PLUGINS = ("serve", "hf", "engine-pt", "accel")


class TestDeployCommand(CommandContract):
    @pytest.fixture
    def plugin(self):
        return "serve"

    @pytest.fixture
    def record_name(self):
        return "deploy"


@pytest.fixture
def cli(martlet_manager, martlet_cli):
    martlet_manager(*PLUGINS)
    return martlet_cli


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--jwt-secret", "short"], "shorter than 32 bytes"),
        (["--jwt-audience", "a"], "--jwt-audience needs"),
        (["--jwt-public-key", "/nowhere.pem"], "cannot read --jwt-public-key"),
        (["--adapters", "x=/nowhere"], "is not a folder"),
        (["--infer-backend", "nope"], "nope"),
        (["--task-type", "seq_cls"], "language models"),
        (["--port", "70000"], "--port must be 0 to 65535"),
        (["--max-n", "0"], "--max-n must be at least 1"),
        (["--max-length", "10"], "--max-model-len"),
    ],
)
def test_bad_options_fail_before_anything_loads(cli, tiny_model_dir, flags, message):
    result = cli("deploy", "--model", str(tiny_model_dir), *flags, "--print-config")
    assert result.exit_code != 0
    assert message in result.stderr, result.stderr


def test_print_config_shows_the_server_options(cli, tiny_model_dir, tmp_path):
    result = cli(
        "deploy", "--model", str(tiny_model_dir), "--port", "9001", "--max-n", "3",
        "--infer_backend", "pt", "--print-config",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "port: 9001" in result.stdout and "max_n: 3" in result.stdout
    import yaml

    printed = yaml.safe_load(result.stdout)  # the backend with its own options (pt: compile)
    assert printed["infer_backend"] == {"name": "pt", "compile": False}
    saved = tmp_path / "deploy.yaml"  # what it printed reads back (found broken: "not an
    saved.write_text(result.stdout)  # option of this command", infer_backend being a plugin's)
    again = cli("deploy", "--config", str(saved), "--print-config")
    assert again.exit_code == 0, again.stderr
    assert again.stdout == result.stdout


def test_an_address_in_use_is_an_error(cli, tiny_model_dir):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = cli("deploy", "--model", str(tiny_model_dir), "--port", str(port))
    assert result.exit_code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_infer_takes_server_options_only_with_port(cli, tiny_model_dir):
    result = cli("infer", "--model", str(tiny_model_dir), "--api-key", "k", "--query", "Hi")
    assert result.exit_code == 2 and "--api-key is an option of the server" in result.stderr
    result = cli("infer", "--model", str(tiny_model_dir), "--port", "0", "--query", "Hi")
    assert result.exit_code == 2 and "--query does not apply with --port" in result.stderr
    result = cli("infer", "--model", str(tiny_model_dir), "--port", "0", "--temperature", "1")
    assert result.exit_code == 2 and "--temperature does not apply" in result.stderr


@pytest.mark.slow
def test_a_model_that_cannot_load_stops_the_server_with_the_error(tmp_path):
    missing = tmp_path / "no-model-here"
    result = subprocess.run(
        [sys.executable, "-c", CLI, "deploy", "--model", str(missing), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "loading" in result.stdout and "serving" not in result.stdout
    assert "Error:" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_sigterm_lets_the_request_in_flight_finish_then_exits_0(start_server, long_model_dir):
    key = "sk-from-the-environment"
    server = start_server("--model", str(long_model_dir), "--max-batch-size", "2",
                          command="infer", key=key, env={"MARTLET_API_KEY": key})  # fmt: skip
    assert "Bearer $MARTLET_API_KEY" in server.banner + "".join(server.out_lines)
    assert server.request("GET", "/v1/models", auth=False)[0] == 401
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    body = {"prompt": "Hello", "max_tokens": 300, "ignore_eos": True, "stream": True}
    conn.request("POST", "/v1/completions", json.dumps(body), server.headers())
    response = conn.getresponse()
    assert response.status == 200
    first = response.readline()
    assert first.startswith(b"data: ")
    server.proc.send_signal(15)  # SIGTERM while it decodes
    events = [first.decode().strip()] + [
        line.decode().strip() for line in response.read().splitlines() if line.strip()
    ]
    conn.close()
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e[6:]) for e in events[:-1]]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"  # all 300, not aborted
    assert server.proc.wait(timeout=60) == 0
    assert "martlet deploy: stopped" in server.stderr


PLUGIN = '''
    """A third party's serving backend: it answers every prompt with its own tokens, reversed,
    repeated --echo-repeat times (a ServingEngine written against martlet.generation only);
    it fails on token 0 and stops on token 1."""

    import threading
    from dataclasses import dataclass

    from martlet import hookimpl
    from martlet.config import option
    from martlet.generation import EngineStoppedError, SamplingParams, Step, Stream
    from martlet.records import BackendRecord

    MARTLET_API = 1


    @dataclass(kw_only=True)
    class MirrorOptions:
        """The mirror backend"""

        echo_repeat: int = option(1, help="How many times the reversed prompt is repeated.")


    class MirrorEngine:
        max_model_len = 512

        def __init__(self, folder, repeat):
            from transformers import AutoTokenizer

            self.tokenizer = AutoTokenizer.from_pretrained(folder)
            self.repeat = repeat

        @classmethod
        def serving(cls, model, *, adapters=None, echo_repeat=1, **_):
            return cls(model, echo_repeat)

        def adapters(self):
            return []

        def submit(self, prompt_ids, params, *, adapter=None, request_id=""):
            params.check()
            stream = Stream(request_id)
            ids = (list(prompt_ids)[::-1] * self.repeat)[: params.max_tokens]

            def run():
                for i, token in enumerate(ids):
                    if token == 0:  # token 0 breaks this engine, after what came before it
                        stream.close(RuntimeError("mirror cracked: secret detail"))
                        return
                    if token == 1:  # token 1: the engine is stopping
                        stream.close(EngineStoppedError("the mirror is stopping"))
                        return
                    last = i == len(ids) - 1
                    stream.put(Step([token], finish_reason="length" if last else None))
                stream.close()

            threading.Thread(target=run, daemon=True).start()
            return stream

        def shutdown(self, drain=True):
            pass


    @hookimpl
    def martlet_inference_backends():
        yield BackendRecord(
            name="mirror",
            impl=f"{__name__}:MirrorEngine",
            summary="Answers with the prompt reversed.",
            capabilities={"serve", "cpu"},
            options=f"{__name__}:MirrorOptions",
        )
        yield BackendRecord(
            name="no-serve",
            impl=f"{__name__}:MirrorEngine",
            summary="Cannot serve.",
            capabilities={"cpu"},
        )
'''


@pytest.fixture
def mirror(tmp_path):
    file = tmp_path / "mirror_backend.py"
    file.write_text(textwrap.dedent(PLUGIN))
    return str(file)


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", CLI, *args], capture_output=True, text=True, timeout=120
    )


def test_a_backends_options_join_deploy_when_it_is_selected(mirror, tiny_model_dir):
    shown = run_cli("--plugin", mirror, "deploy", "--infer-backend", "mirror", "--help")
    assert shown.returncode == 0, shown.stderr
    assert "The mirror backend" in shown.stdout and "--echo-repeat" in shown.stdout
    refused = run_cli(
        "--plugin", mirror, "deploy", "--model", str(tiny_model_dir), "--echo-repeat", "2",
        "--print-config",
    )  # fmt: skip
    assert refused.returncode == 2 and "--infer-backend mirror" in refused.stderr
    cannot = run_cli(
        "--plugin", mirror, "deploy", "--model", str(tiny_model_dir), "--infer-backend",
        "no-serve", "--print-config",
    )  # fmt: skip
    assert cannot.returncode == 2 and "cannot serve" in cannot.stderr
    neither = run_cli(
        "--plugin", mirror, "infer", "--model", str(tiny_model_dir), "--infer-backend",
        "no-serve", "--query", "hi",
    )  # fmt: skip
    assert neither.returncode == 2, neither.stderr
    assert "can neither generate in-process nor serve" in neither.stderr
    assert "Traceback" not in neither.stderr


@pytest.mark.slow
def test_a_third_party_backend_serves_with_its_options_and_its_failures_leak_nothing(
    start_server, mirror, tiny_model_dir, envelope
):
    server = start_server(
        "--plugin", mirror, "--model", str(tiny_model_dir), "--infer-backend", "mirror",
        "--echo-repeat", "2",
    )  # fmt: skip
    answer = server.client().completions.create(
        model=str(tiny_model_dir), prompt=[5, 6, 7], max_tokens=10
    )
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    assert answer.choices[0].text == tokenizer.decode([7, 6, 5, 7, 6, 5])
    assert answer.usage.completion_tokens == 6

    failing = {"prompt": [0, 5], "max_tokens": 4}  # answered 5, then the engine breaks
    status, _, body = server.request("POST", "/v1/completions", failing)
    assert status == 500
    error = envelope(body)
    assert error["type"] == "server_error" and "secret" not in error["message"]
    status, _, body = server.request("POST", "/v1/completions", {**failing, "stream": True})
    events = [e.removeprefix("data: ") for e in body.decode().split("\n\n") if e]
    assert status == 200 and events[-1] == "[DONE]"  # the response had started: in-band
    error = envelope(json.loads(events[-2]))
    assert error["type"] == "server_error" and "secret" not in error["message"]
    assert "secret detail" in server.stderr  # the log has it, the client does not
    status, _, body = server.request("POST", "/v1/completions", {"prompt": [1, 5]})
    error = envelope(body)  # an engine that stops is not a server error: retry elsewhere
    assert status == 503 and error["type"] == "service_unavailable_error"
    assert "the mirror is stopping" in error["message"]
