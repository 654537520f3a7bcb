"""A training run on several processes: the command starts its ranks under torchrun.

``martlet sft --nproc-per-node 2 ...`` (``pt``, ``rlhf``; the same keys in YAML) writes its
resolved options to a file and runs ``python -m martlet sft --config FILE`` on every rank
through torchrun's elastic agent, in this process — the user never writes a torchrun line. The
ranks know they were launched (``MARTLET_LAUNCHED``): they train, only rank 0 prints to stdout,
and a rank that fails writes its error where the launcher reads it, so the user sees every
failed rank's own message (the agent stops the other ranks: nothing waits on a dead one).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from martlet.errors import MartletError

LAUNCHED = "MARTLET_LAUNCHED"
ERRORS = "MARTLET_LAUNCH_ERRORS"


def in_rank() -> bool:
    """Whether this process is one of a launched run's ranks."""
    return os.environ.get(LAUNCHED) == "1"


def wanted(config: Any) -> bool:
    """Whether ``config`` asks for processes this one must start: more than one, or a
    parallel strategy (one process in a process group of one is a valid FSDP or DeepSpeed
    run), and this process is not already a rank."""
    if in_rank():
        return False
    return config.world_size > 1 or bool(getattr(config, "parallel", None))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _plugin_files() -> list[str]:
    """The local plugin files (``--plugin``) this process loaded: the ranks load them too."""
    from martlet.manager import get_manager

    files = []
    for info in get_manager().plugins:
        path = getattr(info.obj, "__file__", None)
        if info.source == "local" and path:
            files.append(str(Path(path).resolve()))
    return files


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def launch(config: Any, command: str) -> None:
    """Run ``martlet COMMAND`` with ``config`` on ``config.nproc_per_node`` processes here (of
    ``config.nnodes`` machines); returns when every rank has finished.

    Raises:
        MartletError: a rank failed; the message holds each failed rank's own error.
    """
    import yaml
    from martlet.cli import PLUGIN_FILES_ENV
    from martlet.config import to_yaml
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    from martlet_train.job import parallel_name

    port = config.master_port or (_free_port() if config.nnodes == 1 else 29500)
    launch_config = LaunchConfig(
        min_nodes=config.nnodes,
        max_nodes=config.nnodes,
        nproc_per_node=config.nproc_per_node,
        # the nodes' agents meet under one id (a random one per node would never meet)
        run_id="martlet" if config.nnodes > 1 else f"martlet-{uuid.uuid4().hex[:8]}",
        rdzv_backend="static",
        rdzv_endpoint=f"{config.master_addr}:{port}",
        rdzv_configs={"rank": config.node_rank},
        max_restarts=0,
        monitor_interval=0.5,
        start_method="spawn",
    )
    values = yaml.safe_load(to_yaml(config))
    if not isinstance(values.get("parallel"), dict):  # a chosen strategy keeps its options
        values["parallel"] = parallel_name(config)  # ddp by default: its options compose in
    agent_log = logging.getLogger("torch.distributed.elastic")
    level = agent_log.level
    # the resolved config the ranks read, and where a failing rank writes its error: gone
    # once every rank has ended
    with tempfile.TemporaryDirectory(prefix="martlet-launch-") as folder:
        work = Path(folder)
        config_file = work / "config.yaml"
        config_file.write_text(yaml.safe_dump(values, sort_keys=False), encoding="utf-8")
        errors = work / "errors"
        errors.mkdir()
        env = {LAUNCHED: "1", ERRORS: str(errors)}
        files = _plugin_files()
        if files:
            env[PLUGIN_FILES_ENV] = os.pathsep.join(files)
        if "OMP_NUM_THREADS" not in os.environ:  # the cores shared out, not all to each rank
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
            cores = cores or os.cpu_count() or 1
            env["OMP_NUM_THREADS"] = str(max(1, cores // config.nproc_per_node))
        args = ("-m", "martlet", command, "--config", str(config_file))
        agent_log.setLevel(logging.CRITICAL)  # its failure report is ours, below
        try:
            with _environ(env):
                elastic_launch(launch_config, sys.executable)(*args)
        except ChildFailedError as exc:
            raise _failure(exc, errors, config) from None
        finally:
            agent_log.setLevel(level)


#: what a rank says when another rank died under it: a consequence, not the cause
_PEER_GONE = ("Connection closed by peer", "Connection reset by peer", "Broken pipe", "SIGTERM")


def _failure(exc: Any, errors: Path, config: Any) -> MartletError:
    """The error of a launched run: the failed ranks' own errors, the rank that failed first
    before those that only lost a peer; else the exit codes."""
    reports: dict[int, dict[str, str]] = {}
    for global_rank, failure in sorted(exc.failures.items()):
        file = errors / f"rank-{global_rank}.json"
        try:
            reports[global_rank] = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            code = getattr(failure, "exitcode", None)
            what = f"exited with code {code}" if code is not None else "failed"
            reports[global_rank] = {"what": what}
    causes = [r for r, rep in reports.items() if not any(p in rep["what"] for p in _PEER_GONE)]
    causes = causes or sorted(reports)
    lines = []
    for r in causes:
        report = reports[r]
        lines.append(
            f"rank {r}: {report['what']}" + (f" ({report['why']})" if report.get("why") else "")
        )
    followers = [r for r in sorted(reports) if r not in causes]
    if followers:
        names = ", ".join(str(r) for r in followers)
        lines.append(f"rank {names} stopped because of it (lost a peer)")
    fixes = {reports[r].get("fix") for r in causes if reports[r].get("fix")}
    return MartletError(
        f"the run on {config.world_size} processes failed on rank "
        + ", ".join(str(r) for r in causes),
        why="\n".join(lines),
        fix=fixes.pop()
        if len(fixes) == 1
        else "fix what the rank's error says; the other ranks were stopped",
    )


@contextlib.contextmanager
def rank_errors() -> Iterator[None]:
    """In a launched rank: silence stdout on every rank but 0, and write an error that ends
    the rank where the launcher reads it."""
    if not in_rank():
        yield
        return
    _die_with_launcher()
    if rank() != 0:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the rest of the process
        # rank 0 shows the progress bars and warnings every rank would repeat; the others'
        # stderr carries only what goes wrong there
        import warnings

        warnings.simplefilter("ignore")
        os.environ["TQDM_DISABLE"] = os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        os.environ["TRANSFORMERS_VERBOSITY"] = "error"
    try:
        yield
    except BaseException as exc:
        folder = os.environ.get(ERRORS)
        if folder and not isinstance(exc, (SystemExit, KeyboardInterrupt)):
            if isinstance(exc, MartletError):
                report = {"what": exc.what, "why": exc.why or "", "fix": exc.fix or ""}
            else:
                report = {"what": f"{type(exc).__name__}: {exc}"}
            with contextlib.suppress(OSError):
                Path(folder, f"rank-{rank()}.json").write_text(json.dumps(report), "utf-8")
        raise


def _die_with_launcher() -> None:
    """On Linux, end this rank when the launcher that started it dies without stopping it
    (killed outright): no rank is left training, or waiting on its peers, on its own."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG


def finished_result(config: Any) -> Any:
    """What a launched run left in its output directory, as a
    :class:`~martlet_train.loop.TrainResult` (the ranks ran in other processes)."""
    from martlet_train.loop import TrainResult
    from martlet_train.rundir import finished

    out = Path(config.output_dir)
    done = finished(out) or {}
    return TrainResult(out, int(done.get("global_step", 0)), dict(done.get("final", {})))
