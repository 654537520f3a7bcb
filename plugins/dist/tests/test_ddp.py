"""`martlet sft --nproc-per-node 2` over gloo on this CPU: two DDP processes train like one
process with the same global batch, resume on another number of processes, and a failing
rank ends the run with its own error."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from martlet_sdk.contracts import ParallelContract
from martlet_sdk.testing import CLI, assert_same_tensors
from martlet_sdk.testing import logged as curve
from martlet_sdk.testing import run_cli as martlet

COMMON = (
    "--dataset", "sample-sft#32", "--logging-steps", "1", "--lora-dropout", "0",
    "--seed", "7", "--lr-scheduler-type", "constant", "--learning-rate", "1e-3",
)  # fmt: skip

pytestmark = pytest.mark.slow


def test_two_ddp_processes_train_like_one_with_the_same_global_batch(tiny, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    single = martlet(
        "sft", "--model", tiny, *COMMON, "--max-steps", "4",
        "--per-device-train-batch-size", "4", "--output-dir", str(one),
    )  # fmt: skip
    assert single.returncode == 0, single.stderr
    ddp = martlet(
        "sft", "--model", tiny, *COMMON, "--max-steps", "4",
        "--per-device-train-batch-size", "2", "--nproc-per-node", "2", "--output-dir", str(two),
    )  # fmt: skip
    assert ddp.returncode == 0, ddp.stderr
    assert curve(two) == pytest.approx(curve(one), abs=1e-5)
    assert len(curve(two)) == 2 * 4
    assert_same_tensors(two / "adapter_model.safetensors", one / "adapter_model.safetensors")
    assert ddp.stdout.count("trainable parameters") == 1  # rank 0 prints, rank 1 does not
    assert "run saved to" in ddp.stdout
    import yaml

    config = yaml.safe_load((two / "config.yaml").read_text())
    assert config["nproc_per_node"] == 2 and config["parallel"]["name"] == "ddp"
    answer = martlet("infer", "--adapters", str(two), "--query", "hi", "--max-new-tokens", "2")
    assert answer.returncode == 0, answer.stderr


def test_two_nodes_train_like_one_process(tiny, tmp_path):
    """--nnodes 2: two launchers (here on one machine, 127.0.0.1) meet at --master-addr and
    --master-port, one rank each; node 0 writes the run, node 1 stays silent."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    one, two = tmp_path / "one", tmp_path / "two"
    single = martlet(
        "sft", "--model", tiny, *COMMON, "--max-steps", "3",
        "--per-device-train-batch-size", "4", "--output-dir", str(one),
    )  # fmt: skip
    assert single.returncode == 0, single.stderr
    nodes = (
        "sft", "--model", tiny, *COMMON, "--max-steps", "3", "--per-device-train-batch-size",
        "2", "--nnodes", "2", "--nproc-per-node", "1", "--master-addr", "127.0.0.1",
        "--master-port", port, "--output-dir", str(two),
    )  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    node1 = subprocess.Popen(
        [sys.executable, "-c", CLI, *nodes, "--node-rank", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        node0 = martlet(*nodes, "--node-rank", "0", timeout=300)
        out1, err1 = node1.communicate(timeout=60)
    finally:
        node1.kill()
    assert node0.returncode == 0, node0.stderr
    assert node1.returncode == 0, err1
    assert curve(two) == pytest.approx(curve(one), abs=1e-5)
    assert "run saved to" in node0.stdout
    assert out1 == "" and err1 == ""  # rank 1: no output, no repeated warnings or progress bars


def test_a_run_resumes_on_another_number_of_processes(tiny, tmp_path):
    whole, split = tmp_path / "whole", tmp_path / "split"
    reference = martlet(
        "sft", "--model", tiny, *COMMON, "--max-steps", "4",
        "--per-device-train-batch-size", "4", "--output-dir", str(whole),
    )  # fmt: skip
    assert reference.returncode == 0, reference.stderr
    # two processes save at step 2 and stop at 3; one process resumes from step 2 to 4
    first = martlet(
        "sft", "--model", tiny, *COMMON, "--max-steps", "3", "--save-steps", "2",
        "--per-device-train-batch-size", "2", "--nproc-per-node", "2", "--output-dir", str(split),
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    resumed = martlet(
        "sft", "--model", tiny, *COMMON, "--max-steps", "4", "--per-device-train-batch-size", "4",
        "--output-dir", str(split), "--resume-from-checkpoint", str(split / "checkpoint-2"),
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stdout
    assert curve(split) == pytest.approx(curve(whole), abs=1e-5)


BOOM = """
import os

from martlet import hookimpl
from martlet.errors import MartletError
from martlet.records import CallbackRecord


class Boom:
    def __init__(self, **options):
        pass

    def on_log(self, step, metrics):
        pass

    def on_end(self):
        pass

    def on_step(self, step):
        if os.environ.get("RANK") == "1":
            raise MartletError("rank one broke on purpose", fix="nothing to fix")


@hookimpl
def martlet_callbacks():
    yield CallbackRecord(name="boom", impl=f"{__name__}:Boom", summary="fails on rank 1")
"""


def test_a_failing_rank_ends_the_run_with_its_own_error(tiny, tmp_path):
    plugin = tmp_path / "boom_plugin.py"
    plugin.write_text(BOOM)
    started = time.monotonic()
    result = martlet(
        "--plugin", str(plugin), "sft", "--model", tiny, *COMMON, "--max-steps", "20",
        "--nproc-per-node", "2", "--report-to", "boom", "--output-dir", str(tmp_path / "run"),
        timeout=300,
    )  # fmt: skip
    assert result.returncode != 0
    assert "failed on rank 1" in result.stderr, result.stderr
    assert "rank 1: rank one broke on purpose" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr.split("Error: the run")[-1]
    assert time.monotonic() - started < 240  # rank 0 was stopped, not left waiting


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (("--nproc-per-node", "0"), {}, "--nproc-per-node must be at least 1"),
        (("--nproc-per-node", "2", "--node-rank", "1"), {}, "--node-rank must be between 0"),
        (("--nproc-per-node", "2"), {"MARTLET_DISABLE_PLUGINS": "martlet-dist"}, "martlet-dist"),
        (("--parallel", "zero9"), {}, "zero9"),
    ],
)
def test_mistakes_fail_before_anything_starts(tiny, tmp_path, args, env, message):
    result = martlet(
        "sft", "--model", tiny, "--dataset", "sample-sft#4", *args,
        "--output-dir", str(tmp_path / "run"), env=env,
    )  # fmt: skip
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert not (tmp_path / "run" / "config.yaml").exists()


def test_fewer_rows_than_processes_still_train(tiny, tmp_path):
    # each rank gets the same number of rows (one repeated), so no rank waits for another
    result = martlet(
        "sft", "--model", tiny, "--dataset", "sample-sft#1", "--max-steps", "2",
        "--logging-steps", "1", "--nproc-per-node", "2", "--output-dir", str(tmp_path / "run"),
        timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert len(curve(tmp_path / "run")) == 2 * 2


def _children_of(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_ranks_end_when_their_launcher_is_killed(tiny, tmp_path):
    import signal

    launcher = subprocess.Popen(
        [sys.executable, "-c", CLI, "sft", "--model", tiny, "--dataset", "sample-sft#32",
         "--max-steps", "100000", "--nproc-per-node", "2", "--output-dir", str(tmp_path / "run")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (tmp_path / "run" / "config.yaml").exists():
            time.sleep(0.5)
        ranks = _children_of(launcher.pid)
        assert len(ranks) == 2, ranks
    finally:
        launcher.send_signal(signal.SIGKILL)  # no chance to stop its ranks itself
        launcher.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(Path(f"/proc/{r}").exists() for r in ranks):
        time.sleep(0.2)
    for r in ranks:  # gone, or a zombie nobody waits for
        stat = Path(f"/proc/{r}/stat")
        assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"


class TestDdpContract(ParallelContract):
    @pytest.fixture
    def plugin(self):
        return "dist"

    @pytest.fixture
    def record_name(self):
        return "ddp"


class TestFsdpContract(TestDdpContract):
    @pytest.fixture
    def record_name(self):
        return "fsdp"
