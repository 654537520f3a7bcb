"""Checkpoints: written to a temporary folder and renamed into place, read back exactly.

A checkpoint folder ``checkpoint-N`` holds what the tuner saves (an adapter or weights, in
safetensors, usable on its own), the tokenizer, and ``trainer_state/`` with the optimizer,
scheduler and random states and ``state.json`` (step, epoch, position in the data). A folder
only gets its final name once everything is written, so a crash never leaves a checkpoint that
looks complete. :class:`Checkpointer` is the one place that writes and reads them; a sharded
parallel strategy replaces it.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from martlet.errors import MartletError

STATE_DIR = "trainer_state"


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete checkpoints in ``output_dir``, oldest first (:func:`martlet.rundirs.checkpoints`:
    a checkpoint gets its name only once complete)."""
    from martlet.rundirs import checkpoints

    return checkpoints(output_dir)


def resolve_resume(value: str | None, output_dir: str | Path) -> Path | None:
    """The checkpoint ``--resume-from-checkpoint`` names (``auto``: the newest in the run)."""
    if not value:
        return None
    if value == "auto":
        found = list_checkpoints(output_dir)
        return found[-1] if found else None
    path = Path(value)
    if not (path / STATE_DIR / "state.json").is_file():
        raise MartletError(
            f"{value} is not a Martlet checkpoint",
            why=f"{STATE_DIR}/state.json is missing",
            fix="pass a checkpoint-N folder of a run, or `auto`",
        )
    return path


def _rng_state() -> dict[str, Any]:
    import numpy as np
    import torch

    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(keys.astype("int64")),
            "pos": pos,
            "has_gauss": has_gauss,
            "gauss": gauss,
        },
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np
    import torch

    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype("uint32"), n["pos"], n["has_gauss"], n["gauss"])
    )
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class Checkpointer:
    """Writes and reads checkpoints of one run (on the main process only)."""

    def __init__(self, output_dir: str | Path, limit: int | None = None) -> None:
        self.output_dir = Path(output_dir)
        self.limit = limit

    def save(
        self,
        step: int,
        *,
        tuner: Any,
        model: Any,
        tokenizer: Any,
        optimizer: Any,
        scheduler: Any,
        state: dict[str, Any],
        keep: set[Path] = frozenset(),
    ) -> Path:
        """Write ``checkpoint-{step}`` atomically, then drop the oldest beyond the limit."""
        import torch

        final = self.output_dir / f"checkpoint-{step}"
        tmp = self.output_dir / f".checkpoint-{step}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        tuner.save(model, str(tmp))
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))
        meta = tmp / STATE_DIR
        meta.mkdir()
        torch.save(optimizer.state_dict(), meta / "optimizer.pt")
        torch.save(scheduler.state_dict(), meta / "scheduler.pt")
        torch.save(_rng_state(), meta / "rng_state.pt")
        (meta / "state.json").write_text(json.dumps(state, indent=2))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        self._rotate(keep | {final})
        return final

    def _rotate(self, keep: set[Path]) -> None:
        if not self.limit or self.limit <= 0:
            return
        found = list_checkpoints(self.output_dir)
        extra = len(found) - self.limit
        for path in found:
            if extra <= 0:
                break
            if path in keep:
                continue
            shutil.rmtree(path, ignore_errors=True)
            extra -= 1

    def load(self, path: Path, *, tuner: Any, model: Any, optimizer: Any, scheduler: Any) -> dict:
        """Restore the model's trained weights, optimizer, scheduler and random states; return
        the loop state (step, epoch, data position) saved with them."""
        import torch

        restore = getattr(tuner, "restore", None)
        if restore is None:
            raise MartletError(
                f"this tuner cannot resume from {path}",
                why="it saves a result that cannot be loaded back into a run (e.g. AdaLoRA)",
                fix="start the run again without --resume-from-checkpoint",
            )
        meta = path / STATE_DIR
        with _damaged(path, path):
            restore(model, str(path))
        with _damaged(path, meta / "optimizer.pt"):
            optimizer.load_state_dict(torch.load(meta / "optimizer.pt", weights_only=True))
        with _damaged(path, meta / "scheduler.pt"):
            scheduler.load_state_dict(torch.load(meta / "scheduler.pt", weights_only=True))
        with _damaged(path, meta / "rng_state.pt"):
            _set_rng_state(torch.load(meta / "rng_state.pt", weights_only=True))
        with _damaged(path, meta / "state.json"):
            state = json.loads((meta / "state.json").read_text())
            if not isinstance(state, dict) or "global_step" not in state:
                raise ValueError("it holds no global_step")
        return state


@contextlib.contextmanager
def _damaged(checkpoint: Path, file: Path) -> Iterator[None]:
    """A checkpoint file that is missing or cannot be read: a MartletError naming it."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - torch, safetensors, json: each its own type
        if file == checkpoint:
            what = "its trained weights cannot be read"
        else:
            what = f"{file} is " + ("missing" if not file.exists() else "damaged")
        earlier = [p for p in list_checkpoints(checkpoint.parent) if p != checkpoint]
        fix = "start afresh with --overwrite-output-dir"
        if earlier:
            fix = (
                f"resume from an earlier checkpoint (--resume-from-checkpoint {earlier[-1]}), "
                f"or delete {checkpoint} and resume with auto, or {fix}"
            )
        raise MartletError(
            f"cannot resume from {checkpoint}: {what}",
            why=f"{type(exc).__name__}: {exc}"[:500],
            fix=fix,
            cause=exc,
        ) from exc
