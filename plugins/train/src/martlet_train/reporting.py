"""What a run reports, as callbacks the loop calls like any ``--report-to`` one
(:class:`martlet.interfaces.Callback`): ``metrics.jsonl`` (:class:`MetricsFile`), the progress
bar and log lines (:class:`Console`), the loss curve (:class:`LossPlot`). They run on the main
process only; the loop builds them with :func:`reporters`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any


class MetricsFile:
    """Each log line appended to ``OUTPUT_DIR/metrics.jsonl`` (what resuming trims and the run
    summary reads)."""

    def __init__(self, output_dir: Path) -> None:
        self.path = Path(output_dir) / "metrics.jsonl"

    def on_log(self, step: int, metrics: Mapping[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(dict(metrics)) + "\n")

    def on_end(self) -> None:
        pass


class Console:
    """The progress bar (tqdm, one tick per optimizer step, the latest loss beside it) and one
    printed line per log; :meth:`close` ends the bar when the loop ends."""

    def __init__(self, total: int, start: int, disable: bool) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(
            total=total, initial=start, desc="train", unit="step", disable=disable,
            dynamic_ncols=True,
        )  # fmt: skip
        self.open = True

    def on_step(self, step: int) -> None:
        self.bar.update(1)

    def on_log(self, step: int, metrics: Mapping[str, Any]) -> None:
        if self.open and "loss" in metrics:
            self.bar.set_postfix(
                loss=f"{metrics['loss']:.4f}",
                lr=f"{metrics['learning_rate']:.2e}",
                tok_s=f"{metrics.get('tokens_per_second', 0):.0f}",
            )
        self.write(" ".join(f"{k}={_fmt(v)}" for k, v in metrics.items()))

    def write(self, text: str) -> None:
        """A line above the bar while it is open, plainly afterwards."""
        if self.open:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self.open:
            self.bar.close()
            self.open = False

    def on_end(self) -> None:
        self.close()


class LossPlot:
    """``OUTPUT_DIR/loss.png`` (train, and eval where logged), drawn when the run ends from
    ``metrics.jsonl``; a plot that cannot be drawn costs a warning, never the run."""

    def __init__(self, output_dir: Path, history: Callable[[], list[dict[str, Any]]]) -> None:
        self.path = Path(output_dir) / "loss.png"
        self.history = history

    def on_log(self, step: int, metrics: Mapping[str, Any]) -> None:
        pass

    def on_end(self) -> None:
        try:
            plot_losses(self.history(), self.path)
        except Exception as exc:  # noqa: BLE001 - a plot never costs the run
            print(f"warning: loss.png not drawn: {exc}", flush=True)


def reporters(trainer: Any, start: int) -> tuple[Console, list[Any]]:
    """The built-in reporters of a run (main process: the metrics file, the console, the
    plot; elsewhere none), the console first returned on its own for the loop's messages."""
    o = trainer.options
    console = Console(trainer.total_steps, start, not trainer.is_main or o.disable_progress_bar)
    if not trainer.is_main:
        return console, []
    return console, [
        MetricsFile(trainer.output_dir),
        console,
        LossPlot(trainer.output_dir, trainer.read_metrics),
    ]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def plot_losses(history: list[dict[str, Any]], path: Path) -> Path | None:
    """Write the loss curve (train, and eval where logged) as a PNG."""
    train = [(m["step"], m["loss"]) for m in history if "loss" in m]
    evals = [(m["step"], m["eval_loss"]) for m in history if "eval_loss" in m]
    if not train and not evals:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        ax.plot(*zip(*train, strict=True), label="train loss")
    if evals:
        ax.plot(*zip(*evals, strict=True), marker="o", label="eval loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
