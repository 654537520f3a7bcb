"""Loggers the loop calls with every metrics line."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from martlet.config import option


@dataclass(kw_only=True)
class TensorBoardOptions:
    """TensorBoard: metrics as event files"""

    logging_dir: str | None = option(
        None, help="Where the event files go (default: OUTPUT_DIR/runs).", metavar="DIR"
    )


class TensorBoardCallback:
    """Scalars under ``OUTPUT_DIR/runs``, or ``--logging-dir`` (``tensorboard --logdir``)."""

    def __init__(
        self, output_dir: str | Path = ".", logging_dir: str | None = None, **_: Any
    ) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(logging_dir or Path(output_dir) / "runs"))

    def on_log(self, step: int, metrics: Mapping[str, Any]) -> None:
        for name, value in metrics.items():
            if name != "step" and isinstance(value, (int, float)):
                self.writer.add_scalar(name.replace("eval_", "eval/"), value, step)

    def on_end(self) -> None:
        self.writer.flush()
        self.writer.close()
