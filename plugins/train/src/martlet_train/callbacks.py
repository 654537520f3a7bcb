"""Loggers the loop calls with every metrics line."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any


class TensorBoardCallback:
    """Scalars under ``OUTPUT_DIR/runs`` (``tensorboard --logdir OUTPUT_DIR/runs``)."""

    def __init__(self, output_dir: str | Path = ".", **_: Any) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(Path(output_dir) / "runs"))

    def on_log(self, step: int, metrics: Mapping[str, Any]) -> None:
        for name, value in metrics.items():
            if name != "step" and isinstance(value, (int, float)):
                self.writer.add_scalar(name.replace("eval_", "eval/"), value, step)

    def on_end(self) -> None:
        self.writer.flush()
        self.writer.close()
