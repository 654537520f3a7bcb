"""The run directory: what it may hold, and how a new run, an overwrite and a resume treat it.

A run directory (``--output-dir``) may hold:

- ``config.yaml`` and ``plugins.lock.json``: written when the run starts;
- ``metrics.jsonl``: one JSON object per logged step and evaluation;
- ``checkpoint-N/``: complete checkpoints (written to ``.checkpoint-N.tmp`` and renamed);
- at the end, the trained weights (an adapter or a model), the tokenizer,
  ``trainer_state.json`` (the final step and metrics: the run is complete) and ``loss.png``;
- ``.replaced-run/``: the previous run, moved aside by ``--overwrite-output-dir`` and deleted
  once this run saves a checkpoint or finishes.

A directory *holds a run* when it has a checkpoint or ``trainer_state.json``. One that holds
only the start files of a run that never saved a step (it failed, or was killed, before) does
not: a new run replaces those files and says so, so a failed command can simply be run again.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from martlet.errors import ConfigError, MartletError
from martlet.paths import nearest_existing, write_error

#: where ``--overwrite-output-dir`` moves the previous run until this one has saved
REPLACED = ".replaced-run"
#: what a run writes when it starts or logs, before it has saved anything
START_FILES = ("config.yaml", "plugins.lock.json", "metrics.jsonl", "loss.png")
STATE_FILE = "trainer_state.json"
METRICS_FILE = "metrics.jsonl"


def check_writable(path: str | Path, flag: str = "--output-dir") -> None:
    """Fail now, before anything loads, if ``path`` cannot become a directory to write in."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise ConfigError(
            f"{flag} {out} is a file, not a directory",
            fix=f"choose another {flag}, or move the file away",
        )
    existing = nearest_existing(out)  # the folder new entries go into
    if existing.exists() and not existing.is_dir():
        raise ConfigError(
            f"{flag} {out} cannot be created: {existing} is a file",
            fix=f"choose another {flag}",
        )
    error = write_error(existing)
    if error is not None:
        raise ConfigError(
            f"{flag} {out} is not writable",
            why=f"{existing}: {error.strerror or error}",
            fix=f"choose another {flag}, or make {existing} writable",
        ) from error


def holds_run(out: Path) -> bool:
    """Whether ``out`` holds a run that saved something: a checkpoint or its end state."""
    from martlet_train.checkpoint import list_checkpoints

    return (out / STATE_FILE).is_file() or bool(list_checkpoints(out))


def prepare(config: Any, say: Any = print) -> Path:
    """Make ``--output-dir`` ready for this run and return it.

    A directory holding a run is refused unless the run resumes (which wins over
    ``--overwrite-output-dir``) or ``--overwrite-output-dir`` is set (then the old run is moved
    to ``.replaced-run/``); the start files of a run that
    never saved a step are replaced. Resuming a run keeps its ``metrics.jsonl``; the trainer
    drops the lines past the step it resumes from.
    """
    out = Path(config.output_dir)
    if int(os.environ.get("RANK", "0")) != 0:
        return out  # one process of a multi-process run prepares the directory: rank 0
    check_writable(out)
    resuming = bool(config.resume_from_checkpoint)
    if holds_run(out):
        if config.overwrite_output_dir and not resuming:
            _move_aside(out)
            say(
                f"--overwrite-output-dir: the previous run in {out} was moved to "
                f"{out / REPLACED} (deleted once this run saves a checkpoint or finishes)"
            )
        elif not resuming:
            raise ConfigError(
                f"{out} already holds a run",
                fix="continue it with --resume-from-checkpoint auto, pass "
                "--overwrite-output-dir, or choose another --output-dir",
            )
    else:
        leftovers = [name for name in START_FILES if (out / name).is_file()]
        if leftovers:
            for name in leftovers:
                (out / name).unlink()
            say(f"replaced {', '.join(leftovers)} in {out}: left by a run that never saved a step")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _move_aside(out: Path) -> None:
    aside = out / REPLACED
    shutil.rmtree(aside, ignore_errors=True)  # an older one: its replacement never saved
    aside.mkdir()
    for entry in list(out.iterdir()):
        if entry.name != REPLACED:
            os.replace(entry, aside / entry.name)


def discard_replaced(out: Path) -> None:
    """This run has saved: the run it replaced goes."""
    shutil.rmtree(out / REPLACED, ignore_errors=True)


def read_metrics(out: Path, warn: Any = print) -> list[dict[str, Any]]:
    """The JSON lines of ``metrics.jsonl``; lines that do not parse are skipped, with one
    warning."""
    path = out / METRICS_FILE
    if not path.is_file():
        return []
    rows, bad = [], 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if isinstance(row, dict):
            rows.append(row)
        else:
            bad += 1
    if bad:
        warn(f"warning: skipped {bad} unreadable line(s) of {path}")
    return rows


def trim_metrics(out: Path, step: int, warn: Any = print) -> None:
    """Drop the ``metrics.jsonl`` lines logged after ``step`` (a resumed run logs them again)."""
    path = out / METRICS_FILE
    if not path.is_file():
        return
    kept = [m for m in read_metrics(out, warn) if int(m.get("step", 0)) <= step]
    path.write_text("".join(json.dumps(m) + "\n" for m in kept), encoding="utf-8")


def finished(out: Path) -> dict[str, Any] | None:
    """The end state of a complete run in ``out`` (``trainer_state.json``), or None."""
    path = out / STATE_FILE
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise MartletError(
            f"{path} is damaged",
            why=f"it is not JSON ({exc})",
            fix="delete it to resume from the newest checkpoint, or start afresh with "
            "--overwrite-output-dir",
        ) from exc
    return state if isinstance(state, dict) and "final" in state else None
