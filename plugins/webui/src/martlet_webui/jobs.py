"""A ``martlet`` command running in the background, its output followed, and what a training
run reports while it runs.

A :class:`Job` is the command line a tab built (:mod:`martlet_webui.commands`), started as its
own process group so that Stop reaches the command and whatever it started. Its output (stdout
and stderr together, progress bars' carriage returns read as new lines) is kept in memory for
the log box. A training run writes ``metrics.jsonl`` in its run directory as it logs: one JSON
object per log line with ``step`` and ``loss`` (``eval_loss`` where it evaluates),
:func:`read_metrics` reads it for the loss plot.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from martlet.errors import MartletError

from martlet_webui.commands import runnable, shell

#: output lines a job keeps (the log box shows the newest)
KEEP_LINES = 4000
#: how long Stop waits after SIGTERM (a trainer saves a checkpoint first) before SIGKILL
STOP_GRACE_S = 60.0
_PROGRESS = re.compile(r"(\d+)/(\d+)\s*\[")


class Job:
    """``martlet ...`` running in the background.

    Args:
        argv: the command line (starting with ``martlet``), as shown to the user.
        cwd: the folder it runs in (relative paths in ``argv`` are relative to it).
        env: its environment (the UI's own at start-up: the command behaves as it would in
            the user's terminal).
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        cwd: str | Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.argv = list(argv)
        self.cwd = Path(cwd) if cwd is not None else Path.cwd()
        self.lines: deque[str] = deque(maxlen=KEEP_LINES)
        self.stopped = False
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._partial = ""
        try:
            self.process = subprocess.Popen(
                runnable(self.argv),
                cwd=self.cwd,
                env=dict(env) if env is not None else None,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: Stop reaches its children
            )
        except OSError as exc:
            raise MartletError(
                f"cannot start `{shell(self.argv)}`",
                why=f"{type(exc).__name__}: {exc}",
                fix="check that Martlet is installed in the environment the UI runs in",
                cause=exc,
            ) from exc
        self._reader = threading.Thread(target=self._read, daemon=True, name="martlet-job-log")
        self._reader.start()

    def _read(self) -> None:
        stream = self.process.stdout
        assert stream is not None
        while chunk := stream.read1(65536):  # what has arrived, without waiting for more
            text = chunk.decode("utf-8", errors="replace")
            with self._lock:
                pieces = re.split(r"\r\n|\r|\n", self._partial + text)
                self._partial = pieces.pop()
                self.lines.extend(p for p in pieces if p.strip())
        with self._lock:
            if self._partial.strip():
                self.lines.append(self._partial)
            self._partial = ""

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.process.poll()

    def finished(self) -> bool:
        """Whether the process has ended and its output has been read to the end."""
        if self.running:
            return False
        self._reader.join(timeout=5)
        return True

    def log(self, last: int | None = None) -> str:
        """The output so far (the newest ``last`` lines), the line being written included."""
        with self._lock:
            lines = list(self.lines)
            if self._partial.strip():
                lines.append(self._partial)
        return "\n".join(lines[-last:] if last else lines)

    def progress(self) -> tuple[int, int] | None:
        """``(done, total)`` of the newest progress bar in the output, or None."""
        with self._lock:
            lines = [*self.lines, self._partial]
        return progress_of(lines)

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Ask the command to stop (SIGTERM to its process group: a trainer finishes the
        step, saves a checkpoint and ends as a valid run); kill it when it has not ended
        ``grace_s`` seconds later. Returns at once: a thread waits."""
        if not self.running:
            return
        self.stopped = True
        self._signal(signal.SIGTERM)

        def wait_then_kill() -> None:
            try:
                self.process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)

        threading.Thread(target=wait_then_kill, daemon=True, name="martlet-job-stop").start()

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.process.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def wait(self, timeout: float | None = None) -> int:
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return code

    def failure(self, lines: int = 15) -> MartletError | None:
        """The error of a command that ended with a non-zero status (its last ``lines``
        lines of output in ``why``), or None while it runs, when it succeeded or was stopped
        from the UI."""
        code = self.returncode
        if code in (None, 0) or self.stopped:
            return None
        return MartletError(
            f"`{shell(self.argv)}` failed (exit status {code})",
            why="its last output:\n" + self.log(last=lines),
            fix="correct the form (the command's own message is above) and start it again",
        )

    def status(self) -> str:
        """One line: running (for how long), finished, stopped or failed."""
        code = self.returncode
        took = f"{time.monotonic() - self.started:.0f} s"
        if code is None:
            return f"running ({took})" + (", stopping" if self.stopped else "")
        if self.stopped:
            return f"stopped (exit status {code})"
        return "finished" if code == 0 else f"failed (exit status {code})"


def progress_of(lines: Sequence[str]) -> tuple[int, int] | None:
    """``(done, total)`` from the newest progress bar line (tqdm's ``train:  50%|##  | 3/6
    [00:01<00:01, ...]``), or None when there is none."""
    for line in reversed(lines):
        found = _PROGRESS.findall(line)
        if found:
            done, total = found[-1]
            return int(done), int(total)
    return None


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The log lines a training run has written to ``RUN_DIR/metrics.jsonl`` so far (a line
    still being written is left for the next read)."""
    path = Path(run_dir) / "metrics.jsonl"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return []
    rows = []
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def loss_points(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``{"step", "loss", "series"}`` points for the loss plot: the train loss, and the eval
    loss where the run evaluated."""
    points = []
    for row in rows:
        step = row.get("step")
        if not isinstance(step, (int, float)):
            continue
        for key, series in (("loss", "train"), ("eval_loss", "eval")):
            value = row.get(key)
            if isinstance(value, (int, float)):
                points.append({"step": step, "loss": float(value), "series": series})
    return points
