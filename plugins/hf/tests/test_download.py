"""`martlet download`: hubs that cannot be reached fail fast and clearly; nothing in these tests
touches the network (the hubs are a closed local port, a local server that never answers, or
stand-ins for the hub clients)."""

from __future__ import annotations

import shutil
import socket
import sys
import threading
import types
from pathlib import Path

import martlet
import pytest
from martlet.errors import MissingDependencyError, UnknownNameError
from martlet_hf import hub
from martlet_hf.hub import HubError, download


@pytest.fixture
def online(monkeypatch, tmp_path, isolated_cache):
    """Network allowed as far as the environment goes (the tests still reach nothing)."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))


def closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def silent_server():
    """A local endpoint that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    server.close()


def finishes_within(seconds: float, call):
    """Run ``call`` in a thread; fail if it is still running after ``seconds`` (a hang)."""
    outcome: dict = {}

    def run():
        try:
            outcome["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still waiting after {seconds} s: it hangs"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


# ---------------------------------------------------------------------- unreachable hubs


def test_an_unreachable_hugging_face_hub_is_a_fast_clear_error(online, monkeypatch, martlet_cli):
    monkeypatch.setenv("HF_ENDPOINT", closed_port())
    result = finishes_within(30, lambda: martlet_cli("download", "qwen2.5-0.5b-instruct"))
    assert result.exit_code == 1
    assert "cannot reach the Hugging Face Hub to download 'Qwen/Qwen2.5-0.5B-Instruct'" in (
        result.stderr
    )
    assert "pass a local folder" in result.stderr


def test_a_hub_that_never_answers_times_out(online, monkeypatch, silent_server):
    monkeypatch.setenv("HF_ENDPOINT", silent_server)
    with pytest.raises(HubError) as info:
        finishes_within(30, lambda: download("acme/model", timeout=1))
    assert "cannot reach the Hugging Face Hub" in info.value.what
    assert "did not answer within 1 s" in info.value.why


def test_offline_mode_is_a_clear_error(isolated_cache, tmp_path, monkeypatch, martlet_cli):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    result = martlet_cli("download", "--model", "smollm2-135m-instruct")
    assert result.exit_code == 1
    assert "cannot reach the Hugging Face Hub" in result.stderr
    assert "HF_HUB_OFFLINE is set" in result.stderr


def test_offline_with_the_model_already_cached_succeeds(
    isolated_cache, tiny_model_dir, tmp_path, monkeypatch, martlet_cli
):
    repo = tmp_path / "hf-cache" / "models--acme--tiny"
    sha = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(sha)
    shutil.copytree(tiny_model_dir, repo / "snapshots" / sha)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    result = martlet_cli("download", "acme/tiny")
    assert result.exit_code == 0, result.stderr
    assert str(repo / "snapshots" / sha) in result.stdout


def test_an_unreachable_modelscope_is_a_fast_clear_error(online, monkeypatch, martlet_cli):
    monkeypatch.setitem(sys.modules, "modelscope", types.ModuleType("modelscope"))
    sys.modules["modelscope"].snapshot_download = lambda *a, **k: pytest.fail("no probe first")
    monkeypatch.setenv("MODELSCOPE_DOMAIN", closed_port())
    result = finishes_within(
        30, lambda: martlet_cli("download", "qwen2.5-0.5b-instruct", "--hub", "modelscope")
    )
    assert result.exit_code == 1
    assert "cannot reach ModelScope to download 'Qwen/Qwen2.5-0.5B-Instruct'" in result.stderr


def test_modelscope_missing_says_what_to_install(online, monkeypatch, martlet_cli):
    monkeypatch.setitem(sys.modules, "modelscope", None)  # `import modelscope` fails
    result = martlet_cli("download", "qwen2.5-0.5b-instruct", "--hub", "modelscope")
    assert result.exit_code == 1
    assert "needs the modelscope package" in result.stderr
    assert "pip install modelscope" in result.stderr
    with pytest.raises(MissingDependencyError):
        download("qwen2.5-0.5b-instruct", hub="modelscope")


# ---------------------------------------------------------------------- what gets fetched


def fake_snapshot(calls: list, files: Path):
    """A stand-in for a hub client's snapshot_download that copies ``files``."""

    def snapshot_download(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        target = Path(kwargs.get("local_dir") or files.parent / "fetched" / repo_id)
        shutil.copytree(files, target, dirs_exist_ok=True)
        return str(target)

    return snapshot_download


def test_a_registered_id_downloads_its_hub_id_and_then_loads_offline(
    online, monkeypatch, tiny_model_dir, tmp_path, martlet_cli
):
    import huggingface_hub

    calls: list = []
    monkeypatch.setattr(hub, "_probe", lambda url, timeout: None)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot(calls, tiny_model_dir))
    out = tmp_path / "models" / "qwen"
    result = martlet_cli(
        "download", "--model", "qwen2.5-0.5b-instruct", "--output-dir", str(out), "--revision", "v1"
    )
    assert result.exit_code == 0, result.stderr
    assert f"to {out}" in result.stdout
    ((repo_id, kwargs),) = calls
    assert repo_id == "Qwen/Qwen2.5-0.5B-Instruct"
    assert kwargs["local_dir"] == str(out) and kwargs["revision"] == "v1"
    assert kwargs["etag_timeout"] == 10.0

    # the network is gone again; the registered id and the hub id load from that folder
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert Path(martlet.load_tokenizer("qwen2.5-0.5b-instruct").name_or_path) == out
    assert Path(martlet.load_tokenizer("Qwen/Qwen2.5-0.5B-Instruct").name_or_path) == out
    info = martlet_cli("model", "info", "qwen2.5-0.5b-instruct")
    assert "resolves from  download: " + str(out) in info.stdout


def test_modelscope_downloads_the_modelscope_id(online, monkeypatch, tiny_model_dir, tmp_path):
    calls: list = []
    module = types.ModuleType("modelscope")
    module.snapshot_download = fake_snapshot(calls, tiny_model_dir)
    monkeypatch.setitem(sys.modules, "modelscope", module)
    monkeypatch.setattr(hub, "_probe", lambda url, timeout: None)
    done = download("llama3-8b-instruct", hub="modelscope", revision="master")
    assert calls == [("LLM-Research/Meta-Llama-3-8B-Instruct", {"revision": "master"})]
    assert (done.hub, done.model) == ("modelscope", "llama3-8b-instruct")
    # the Hugging Face id of the same model now loads from the ModelScope copy
    assert Path(martlet.load_tokenizer("llama3-8b-instruct").name_or_path) == Path(done.path)


def test_a_repository_the_hub_does_not_have(online, monkeypatch):
    import httpx2
    import huggingface_hub
    from huggingface_hub.errors import RepositoryNotFoundError

    def missing(repo_id, **kwargs):
        response = httpx2.Response(404, request=httpx2.Request("GET", "https://hub/x"))
        raise RepositoryNotFoundError("404 Client Error", response=response)

    monkeypatch.setattr(hub, "_probe", lambda url, timeout: None)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", missing)
    with pytest.raises(HubError) as info:
        download("acme/no-such-model")
    assert "has no model 'acme/no-such-model'" in info.value.what


# ---------------------------------------------------------------------- bad requests


def test_an_unknown_model_id_suggests_close_ones(martlet_cli):
    result = martlet_cli("download", "qwen2.5-7b-instrct")
    assert result.exit_code == 2
    assert "unknown model 'qwen2.5-7b-instrct'" in result.stderr
    assert "qwen2.5-7b-instruct" in result.stderr
    with pytest.raises(UnknownNameError):
        download("qwen2.5-7b-instrct")


def test_a_model_without_an_id_on_that_hub(martlet_cli):
    result = martlet_cli("download", "smollm2-135m-instruct", "--hub", "modelscope")
    assert result.exit_code == 1
    assert "has no id on ModelScope" in result.stderr and "huggingface" in result.stderr


def test_an_unknown_hub_is_a_config_error(martlet_cli):
    result = martlet_cli("download", "qwen2.5-0.5b-instruct", "--hub", "github")
    assert result.exit_code == 2
    assert "must be one of huggingface, modelscope" in result.stderr


def test_the_command_needs_a_model(martlet_cli):
    result = martlet_cli("download")
    assert result.exit_code == 2
    assert "missing required option --model" in result.stderr
