"""The training loop, readable top to bottom.

One optimizer step = ``gradient_accumulation_steps`` micro-batches. Their loss is the summed
token loss divided by the number of target tokens in the *whole step* (every micro-batch, every
rank), so the update does not depend on how the step is split. Evaluation and saving happen on
the main process; checkpoints go through one :class:`Checkpointer`; what is reported (the
metrics file, the progress bar, the loss plot, ``--report-to``) are callbacks
(:mod:`martlet_train.reporting`); Ctrl-C and SIGTERM are :mod:`martlet_train.interrupts`.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from martlet.errors import ConfigError

from martlet_train.checkpoint import Checkpointer, resolve_resume
from martlet_train.interrupts import Interrupts
from martlet_train.losses import IGNORE, causal_lm_loss
from martlet_train.optim import create_optimizer, create_scheduler
from martlet_train.reporting import reporters
from martlet_train.rundir import discard_replaced, finished, read_metrics, trim_metrics

Row = dict[str, Any]


@dataclass
class TrainResult:
    """What a finished (or stopped) run returns."""

    output_dir: Path
    global_step: int
    metrics: dict[str, float] = field(default_factory=dict)
    stopped_early: bool = False
    interrupted: bool = False
    last_checkpoint: Path | None = None
    #: the signal that stopped an interrupted run (SIGINT: Ctrl-C; SIGTERM: a scheduler)
    signal: int | None = None

    @property
    def exit_code(self) -> int:
        """What the command exits with: 0, or 128 + the signal for an interrupted run."""
        return 128 + int(self.signal or signal.SIGINT) if self.interrupted else 0


class Trainer:
    """Trains a prepared model on encoded rows.

    Args:
        model: the model after ``tuner.prepare``.
        tuner: the tuner instance (its optional ``create_optimizer``, ``regularization``,
            ``on_step``, ``restore`` and its ``save`` are used).
        options: the run's options (:class:`~martlet_train.options.TrainOptions` fields, plus
            whatever the tuner reads).
        train_rows: encoded rows (``input_ids``, ``labels``, ...).
        collate: turns a list of rows into a batch of tensors.
        eval_rows: rows for the evaluation loss, or None.
        tokenizer: saved with every checkpoint and the result.
        loss_fn: a :class:`martlet.interfaces.Objective`: ``(model, batch) -> (loss_sum,
            count, metrics)``, with the optional ``count(batch)`` and ``prepare(model,
            batch)``.
        callbacks: :class:`martlet.interfaces.Callback` objects (``on_log``, ``on_end``,
            optionally ``on_step``), called after the built-in reporters
            (:mod:`martlet_train.reporting`: ``metrics.jsonl``, the progress bar and log
            lines, ``loss.png``).
        accelerator: an ``accelerate.Accelerator`` (default: one for ``options.device``).
        checkpointer: writes/reads checkpoints (default: :class:`Checkpointer`).
        activation_budget: a :class:`~martlet_train.memory.ActivationBudget` that plans which
            layers each micro-batch recomputes, or None.
    """

    def __init__(
        self,
        model: Any,
        tuner: Any,
        options: Any,
        *,
        train_rows: Sequence[Row],
        collate: Callable[[list[Row]], dict[str, Any]],
        eval_rows: Sequence[Row] | None = None,
        tokenizer: Any = None,
        loss_fn: Callable[..., tuple[Any, Any, dict[str, float]]] = causal_lm_loss,
        callbacks: Sequence[Any] = (),
        accelerator: Any = None,
        checkpointer: Checkpointer | None = None,
        activation_budget: Any = None,
    ) -> None:
        if not train_rows:
            raise ConfigError("no training rows", fix="check --dataset and its filters")
        self.options = options
        self.tuner = tuner
        self.train_rows = train_rows
        self.eval_rows = eval_rows or []
        self.collate = collate
        self.tokenizer = tokenizer
        self.loss_fn = loss_fn
        self.callbacks = list(callbacks)
        self.budget = activation_budget
        self.output_dir = Path(options.output_dir)
        self.accelerator = accelerator or make_accelerator(options)
        self.checkpointer = checkpointer or Checkpointer(self.output_dir, options.save_total_limit)
        self.world = self.accelerator.num_processes
        self.rank = self.accelerator.process_index
        self.is_main = self.accelerator.is_main_process
        # --parallel's strategy; its optional hooks replace accelerate's wrapping, gradient
        # sync, clipping and saving (a strategy that shards the model itself: fsdp)
        self.strategy = parallel_strategy(options)
        hooks = self.strategy if hasattr(self.strategy, "prepare") else None

        def make_optimizer(model: Any) -> Any:
            optimizer = None
            if hasattr(tuner, "create_optimizer"):
                optimizer = tuner.create_optimizer(model, options)
            return optimizer or create_optimizer(model, options)

        if hooks is not None:  # the optimizer over the parameters the strategy made
            model, optimizer = hooks.prepare(model, make_optimizer, accelerator=self.accelerator)
            # the budget tells parameters from activations by their storage; a sharded
            # model's layers run on gathered copies: every activation is kept instead
            self.budget = None
        else:
            optimizer = make_optimizer(model)
        self.steps_per_epoch = math.ceil(
            len(self._epoch_batches(0)) / options.gradient_accumulation_steps
        )
        if options.max_steps and options.max_steps > 0:
            self.total_steps = options.max_steps
        else:
            self.total_steps = max(1, math.ceil(options.num_train_epochs * self.steps_per_epoch))
        scheduler = create_scheduler(optimizer, options, self.total_steps)
        if hooks is None:
            self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
        else:
            self.model, self.optimizer = model, optimizer
        self.scheduler = scheduler
        self.interrupts = Interrupts(self._print)
        self.console: Any = None
        self.reporters: list[Any] = []

    # ----------------------------------------------------------------- data

    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        """This rank's micro-batches (row indexes) for ``epoch``: a seeded shuffle, optionally
        grouped by length, split across ranks."""
        import torch

        o = self.options
        generator = torch.Generator().manual_seed(o.seed + epoch)
        order = torch.randperm(len(self.train_rows), generator=generator).tolist()
        # an objective may take fewer rows per micro-batch than it trains on (online RL: a
        # prompt becomes num_generations completions)
        size = getattr(self.loss_fn, "rows_per_micro_batch", None) or o.per_device_train_batch_size
        if o.group_by_length:
            chunk = size * o.gradient_accumulation_steps * self.world * 16
            grouped = []
            for i in range(0, len(order), chunk):
                part = order[i : i + chunk]
                part.sort(key=lambda j: -len(self.train_rows[j]["input_ids"]))
                grouped.extend(part)
            order = grouped
        short = -len(order) % self.world  # every rank the same number of rows, so the same
        order += [order[i % len(order)] for i in range(short)]  # steps: a few rows repeated
        mine = order[self.rank :: self.world]
        batches = [mine[i : i + size] for i in range(0, len(mine), size)]
        repeats = int(getattr(self.loss_fn, "repeats", 1) or 1)
        if repeats > 1:  # each step's micro-batches given that many times (num_iterations)
            accum = o.gradient_accumulation_steps
            steps = [batches[i : i + accum] for i in range(0, len(batches), accum)]
            batches = [b for step in steps for _ in range(repeats) for b in step]
        return batches

    def _batch(self, rows: Sequence[Row], indexes: list[int]) -> dict[str, Any]:
        """``rows[indexes]`` collated and moved to the device."""
        return to_device(self.collate([rows[i] for i in indexes]), self.accelerator.device)

    # ----------------------------------------------------------------- loop

    def train(self) -> TrainResult:
        o = self.options
        state = {
            "global_step": 0,
            "epoch": 0,
            "position": 0,
            "best_eval_loss": None,
            "evals_without_improvement": 0,
        }
        if o.resume_from_checkpoint:
            done = finished(self.output_dir)
            if done is not None and int(done.get("global_step", 0)) >= self.total_steps:
                self._print(
                    f"{self.output_dir} is complete ({done['global_step']} of "
                    f"{self.total_steps} steps trained): nothing to resume"
                )
                return TrainResult(
                    self.output_dir, int(done["global_step"]), dict(done.get("final", {}))
                )
        resume = resolve_resume(o.resume_from_checkpoint, self.output_dir)
        if resume is not None:
            with self._hook("restoring"):  # every rank restores
                state.update(
                    self.checkpointer.load(
                        resume,
                        tuner=self.tuner,
                        model=self.accelerator.unwrap_model(self.model),
                        optimizer=self._optimizer_state(),
                        scheduler=self.scheduler,
                    )
                )
            # the same rows consumed, counted in this run's batches (another number of
            # processes, or another --per-device-train-batch-size with the same global batch)
            rows = self.options.per_device_train_batch_size
            saved_world = int(state.pop("world_size", self.world) or self.world)
            saved_rows = int(state.pop("rows_per_batch", rows) or rows)
            if (saved_world, saved_rows) != (self.world, rows):
                consumed = int(state["position"]) * saved_rows * saved_world
                state["position"] = consumed // (rows * self.world)
            if self.is_main:  # what was logged after that checkpoint is logged again
                trim_metrics(self.output_dir, int(state["global_step"]), self._print)
            self._print(f"resumed from {resume} at step {state['global_step']}")
        step, epoch, position = state["global_step"], state["epoch"], state["position"]
        self.console, self.reporters = reporters(self, step)
        if o.eval_on_start and self.eval_rows:
            self._log({"step": 0, **self.evaluate_metrics()})
        eval_every = o.eval_steps or o.save_steps
        window_stats = _Window()
        last_checkpoint: Path | None = resume
        stopped_early = interrupted = False
        self.model.train()
        with self.interrupts.caught():
            while step < self.total_steps:
                batches = self._epoch_batches(epoch)
                while position < len(batches) and step < self.total_steps:
                    window = batches[position : position + o.gradient_accumulation_steps]
                    self._optimizer_step(
                        [self._batch(self.train_rows, b) for b in window], window_stats
                    )
                    step, position = step + 1, position + len(window)
                    state.update(global_step=step, epoch=epoch, position=position)
                    if step % o.logging_steps == 0 or step == self.total_steps:
                        if self.world > 1:  # the run's loss and speed, not this rank's
                            window_stats.gather(self._sum_over_ranks)
                        metrics = window_stats.flush()
                        metrics.update(
                            step=step,
                            epoch=round(epoch + position / len(batches), 4),
                            learning_rate=self.scheduler.get_last_lr()[0],
                        )
                        self._log(metrics)
                    if self.eval_rows and step % eval_every == 0:
                        stopped_early = self._evaluate(step, state)
                    self._each_callback("on_step", step)
                    if step % o.save_steps == 0 and step < self.total_steps:
                        last_checkpoint = self._save_checkpoint(step, state)
                    if stopped_early or self.interrupts.requested:
                        break
                if stopped_early or self.interrupts.requested:
                    break
                epoch, position = epoch + 1, 0
                state.update(epoch=epoch, position=position)
        self.console.close()
        if self.interrupts.requested and step < self.total_steps:
            interrupted = True
            last_checkpoint = self._save_checkpoint(step, state)
            self._print(
                f"interrupted ({self.interrupts.name}): checkpoint saved at "
                f"{last_checkpoint}; continue with:\n  {resume_command()}"
            )
        elif self.eval_rows and step % eval_every != 0:
            self._evaluate(step, state)
        final = self._finish(state)
        return TrainResult(
            self.output_dir,
            step,
            final,
            stopped_early,
            interrupted,
            last_checkpoint,
            self.interrupts.signal if interrupted else None,
        )

    def _optimizer_step(self, micro_batches: list[dict[str, Any]], stats: _Window) -> None:
        """One optimizer step over ``micro_batches`` (this rank's share of the step)."""
        import torch

        acc = self.accelerator
        # the step's time includes preparing its batches (GKD's and online RL's generation)
        started = time.perf_counter()
        prepare = getattr(self.loss_fn, "prepare", None)
        if prepare is not None:  # e.g. on-policy generation: the step trains on what it returns
            micro_batches = [prepare(self.model, b) for b in micro_batches]
        local_targets = sum(self._units(b) for b in micro_batches)
        total_targets = int(
            acc.reduce(torch.tensor(local_targets, device=acc.device), reduction="sum")
        )
        if total_targets == 0:
            return  # nothing to learn from in this step (every label masked)
        step_loss = 0.0
        no_sync = getattr(self.strategy, "no_sync", None) or acc.no_sync
        backward = getattr(self.strategy, "backward", None)  # an engine's own backward pass
        for i, batch in enumerate(micro_batches):
            last = i == len(micro_batches) - 1
            sync = contextlib.nullcontext() if last else no_sync(self.model)
            with sync:  # FSDP reads it in the backward pass, DDP in the forward pass
                with acc.autocast(), self._saving(batch):
                    loss_sum, _count, metrics = self.loss_fn(self.model, batch)
                    # DDP (and FSDP) average gradients over ranks, hence the world size factor
                    loss = loss_sum * self.world / total_targets
                    regularization = getattr(self.tuner, "regularization", None)
                    extra = regularization(acc.unwrap_model(self.model)) if regularization else None
                    if extra is not None:
                        loss = loss + extra / len(micro_batches)
                if backward is not None:
                    backward(self.model, loss)
                else:
                    acc.backward(loss)
            step_loss += float(loss_sum.detach())
            stats.add_metrics(metrics)
            if self.budget is not None and self.budget.enabled:
                stats.add_metrics({"recomputed_layers": (self.budget.checkpointed, 1)})
        grad_norm = None
        engine_step = getattr(self.strategy, "step", None)  # clips, steps and zeroes itself
        if engine_step is not None:
            grad_norm = engine_step(self.model, self.optimizer, self.options.max_grad_norm)
        elif self.options.max_grad_norm and self.options.max_grad_norm > 0:
            clip = getattr(self.strategy, "clip_grad_norm", None)
            if clip is not None:  # sharded gradients: the strategy's norm of the whole
                grad_norm = clip(self.model, self.options.max_grad_norm)
            else:
                grad_norm = acc.clip_grad_norm_(self.model.parameters(), self.options.max_grad_norm)
        if engine_step is None:
            self.optimizer.step()
        on_step = getattr(self.tuner, "on_step", None)
        if on_step is not None:
            on_step(acc.unwrap_model(self.model), self.scheduler.last_epoch + 1)
        self.scheduler.step()
        if engine_step is None:
            self.optimizer.zero_grad(set_to_none=True)
        real = sum(int(_real_tokens(b)) for b in micro_batches)
        positions = sum(_positions(b) for b in micro_batches)
        stats.add(
            loss_sum=step_loss,
            targets=local_targets,
            real=real,
            positions=positions,
            seconds=time.perf_counter() - started,
            grad_norm=float(grad_norm) if grad_norm is not None else None,
        )

    def _sum_over_ranks(self, values: list[float]) -> list[float]:
        """``values``, each summed over every rank (in float64)."""
        import torch

        flat = torch.tensor(values, dtype=torch.float64, device=self.accelerator.device)
        return self.accelerator.reduce(flat, reduction="sum").tolist()

    def _saving(self, batch: dict[str, Any]) -> Any:
        """Where a micro-batch's forward pass runs: inside the activation budget, if any."""
        if self.budget is None:
            return contextlib.nullcontext()
        return self.budget.saving(self.model, _positions(batch))

    # ----------------------------------------------------------------- eval, save, log

    def _units(self, batch: dict[str, Any]) -> int:
        """What the loss of ``batch`` is averaged over: the objective's ``count``, else the
        target tokens."""
        count = getattr(self.loss_fn, "count", None)
        if count is not None:
            return int(count(batch))
        return int((batch["labels"][:, 1:] != IGNORE).sum())

    def evaluate(self) -> float:
        """The loss on the evaluation rows, averaged over its units (target tokens, pairs)."""
        return self.evaluate_metrics()["eval_loss"]

    def evaluate_metrics(self) -> dict[str, float]:
        """``eval_loss`` and the objective's metrics (``eval_<name>``) on the evaluation rows,
        over every rank."""
        import torch

        o = self.options
        self.model.eval()
        names: list[str] = []
        sums: dict[str, list[float]] = {}
        loss_total = [0.0, 0.0]
        rows = list(range(self.rank, len(self.eval_rows), self.world))
        with torch.no_grad():
            for i in range(0, len(rows), o.per_device_eval_batch_size):
                idx = rows[i : i + o.per_device_eval_batch_size]
                batch = self._batch(self.eval_rows, idx)
                with self.accelerator.autocast():
                    loss_sum, _count, metrics = self.loss_fn(self.model, batch)
                loss_total[0] += float(loss_sum)
                loss_total[1] += self._units(batch)
                for name, (value, n) in metrics.items():
                    if name not in sums:
                        names.append(name)
                        sums[name] = [0.0, 0.0]
                    sums[name][0] += float(value)
                    sums[name][1] += float(n)
        # every rank reports the same metric names (one objective), in the same order
        flat = self._sum_over_ranks(loss_total + [x for name in names for x in sums[name]])
        self.model.train()
        out = {"eval_loss": flat[0] / max(flat[1], 1)}
        for k, name in enumerate(names):
            total, n = flat[2 + 2 * k], flat[3 + 2 * k]
            out[f"eval_{name}"] = total / max(n, 1e-12)
        return out

    def _evaluate(self, step: int, state: dict[str, Any]) -> bool:
        metrics = self.evaluate_metrics()
        eval_loss = metrics["eval_loss"]
        self._log({"step": step, **metrics})
        best = state["best_eval_loss"]
        if best is None or eval_loss < best:
            state.update(best_eval_loss=eval_loss, evals_without_improvement=0)
        else:
            state["evals_without_improvement"] += 1
        patience = self.options.early_stopping_patience
        if patience and state["evals_without_improvement"] >= patience:
            self._print(
                f"early stopping at step {step}: eval loss has not improved for "
                f"{patience} evaluations (best {state['best_eval_loss']:.4f})"
            )
            return True
        return False

    def _save_checkpoint(self, step: int, state: dict[str, Any]) -> Path | None:
        path = None
        optimizer = self._optimizer_state(saving=True)  # a collective for a sharded strategy
        with self._hook("saving"):  # every rank gathers, the main process writes
            if self.is_main:
                path = self.checkpointer.save(
                    step,
                    tuner=self.tuner,
                    model=self.accelerator.unwrap_model(self.model),
                    tokenizer=self.tokenizer,
                    optimizer=optimizer,
                    scheduler=self.scheduler,
                    state=dict(
                        state,
                        world_size=self.world,
                        rows_per_batch=self.options.per_device_train_batch_size,
                    ),
                )
                discard_replaced(self.output_dir)
        self.accelerator.wait_for_everyone()
        return path

    def _hook(self, name: str) -> Any:
        """The strategy's ``saving``/``restoring`` context for the model (every rank enters
        it), or nothing."""
        hook = getattr(self.strategy, name, None)
        return hook(self.model) if hook is not None else contextlib.nullcontext()

    def _optimizer_state(self, *, saving: bool = False) -> Any:
        """What the checkpointer saves and loads the optimizer through: the optimizer, or,
        for a strategy with ``optimizer_state_dict``, its whole state gathered now (when
        ``saving``: a collective on every rank) and loaded through the strategy."""
        if not hasattr(self.strategy, "optimizer_state_dict"):
            return self.optimizer
        whole = None
        if saving:
            whole = self.strategy.optimizer_state_dict(self.model, self.optimizer)
        return _StrategyOptimizer(self.strategy, self.model, self.optimizer, whole)

    def _finish(self, state: dict[str, Any]) -> dict[str, float]:
        """Save the trained result first, then the summary, the state and the plot: a side
        file that cannot be read or drawn costs a warning, never the weights."""
        with self._hook("saving"):  # every rank gathers, the main process writes
            if self.is_main:
                model = self.accelerator.unwrap_model(self.model)
                self.tuner.save(model, str(self.output_dir))
                if self.tokenizer is not None:
                    self.tokenizer.save_pretrained(str(self.output_dir))
        history = self.read_metrics()
        train = [m for m in history if "loss" in m]
        evals = [m for m in history if "eval_loss" in m]
        final: dict[str, float] = {"global_step": float(state["global_step"])}
        if train:
            final["train_loss"] = train[-1]["loss"]
            speeds = [m["tokens_per_second"] for m in train if "tokens_per_second" in m]
            if speeds:
                final["tokens_per_second"] = sum(speeds) / len(speeds)
            pads = [m["padding_fraction"] for m in train if "padding_fraction" in m]
            if pads:
                final["padding_fraction"] = sum(pads) / len(pads)
        if evals:
            final["eval_loss"] = evals[-1]["eval_loss"]
        if self.is_main:
            (self.output_dir / "trainer_state.json").write_text(
                json.dumps({**state, "total_steps": self.total_steps, "final": final}, indent=2)
            )
            discard_replaced(self.output_dir)
        self._each_callback("on_end")  # the loss plot among them, drawn after the save
        self.accelerator.wait_for_everyone()
        return final

    def read_metrics(self) -> list[dict[str, Any]]:
        """The metrics logged so far (``metrics.jsonl``; unreadable lines skipped, warned)."""
        return read_metrics(self.output_dir, self._print)

    def _log(self, metrics: dict[str, Any]) -> None:
        """A log line to every reporter and callback (main process)."""
        if self.is_main:
            self._each_callback("on_log", int(metrics["step"]), metrics)

    def _each_callback(self, hook: str, *args: Any) -> None:
        """``hook`` of the built-in reporters, then of the ``--report-to`` callbacks (those
        without an optional hook, ``on_step``, are passed over)."""
        for callback in [*self.reporters, *self.callbacks]:
            method = getattr(callback, hook, None)
            if method is not None:
                method(*args)

    def _print(self, text: str) -> None:
        if self.is_main:
            print(text, flush=True)

    def request_stop(self) -> None:
        """Stop after the current step and save a checkpoint (what Ctrl-C does)."""
        self.interrupts.request()


class _StrategyOptimizer:
    """The optimizer as the checkpointer sees it under a sharded strategy: the whole state
    the strategy gathered, loaded back through the strategy."""

    def __init__(self, strategy: Any, model: Any, optimizer: Any, whole: Any) -> None:
        self.strategy, self.model, self.optimizer, self.whole = strategy, model, optimizer, whole

    def state_dict(self) -> dict[str, Any]:
        return self.whole

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.strategy.load_optimizer_state_dict(self.model, self.optimizer, state)


class _Window:
    """Running totals between two log lines."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.loss_sum = 0.0
        self.targets = self.real = self.positions = 0
        self.seconds = 0.0
        self.grad_norms: list[float] = []
        self.metrics: dict[str, list[float]] = {}

    def add(
        self,
        *,
        loss_sum: float,
        targets: int,
        real: int,
        positions: int,
        seconds: float,
        grad_norm: float | None,
    ) -> None:
        self.loss_sum += loss_sum
        self.targets += targets
        self.real += real
        self.positions += positions
        self.seconds += seconds
        if grad_norm is not None:
            self.grad_norms.append(grad_norm)

    def add_metrics(self, metrics: dict[str, Any]) -> None:
        """Objective metrics, ``name -> (sum, n)``."""
        for name, (value, n) in metrics.items():
            slot = self.metrics.setdefault(name, [0.0, 0.0])
            slot[0] += float(value)
            slot[1] += float(n)

    def gather(self, total: Callable[[list[float]], list[float]]) -> None:
        """Replace the totals by the sums over every rank (``total`` sums a list of numbers
        over the ranks; the seconds are the slowest rank's, as the step waits for it)."""
        names = sorted(self.metrics)
        values = [self.loss_sum, self.targets, self.real, self.positions]
        values += [x for name in names for x in self.metrics[name]]
        summed = total(values)
        self.loss_sum = summed[0]
        self.targets, self.real, self.positions = (int(round(x)) for x in summed[1:4])
        for k, name in enumerate(names):
            self.metrics[name] = [summed[4 + 2 * k], summed[5 + 2 * k]]

    def flush(self) -> dict[str, float]:
        out = {
            "loss": self.loss_sum / max(self.targets, 1),
            "tokens_per_second": self.real / max(self.seconds, 1e-9),
            "padding_fraction": 1.0 - self.real / max(self.positions, 1),
            # the window's totals, so speeds can be summed over a run
            "num_tokens": self.real,
            "step_seconds": self.seconds,
        }
        if self.grad_norms:
            out["grad_norm"] = sum(self.grad_norms) / len(self.grad_norms)
        for name, (total, n) in self.metrics.items():
            if n:
                out[name] = total / n
        self.reset()
        return out


def to_device(batch: dict[str, Any], device: Any) -> dict[str, Any]:
    """A collated batch with its tensors moved to ``device``."""
    return {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}


def _positions(batch: dict[str, Any]) -> int:
    """Token positions a batch runs through the model, padding included (both sides of
    preference pairs)."""
    return sum(int(batch[k].numel()) for k in ("input_ids", "rejected_input_ids") if k in batch)


def _real_tokens(batch: dict[str, Any]) -> Any:
    """Non-padding tokens of a batch: the collator's count, else the 2-D attention mask's."""
    if "num_tokens" in batch:
        return batch["num_tokens"]
    mask = batch.get("attention_mask")
    if mask is not None and mask.dim() == 2:
        return mask.sum()
    return batch["input_ids"].numel()


def resume_command() -> str:
    """The command that continues this run: the one that started it, resuming (and without
    ``--overwrite-output-dir``), when it was the ``martlet`` CLI."""
    import shlex
    import sys

    if not sys.argv or Path(sys.argv[0]).name not in ("martlet", "__main__.py"):
        return "the same command or call with --resume-from-checkpoint auto"
    args = []
    for arg in sys.argv[1:]:
        flag = arg.split("=", 1)[0].replace("_", "-")
        if flag != "--overwrite-output-dir":
            args.append(arg)
    names = {a.split("=", 1)[0].replace("_", "-") for a in args}
    if "--resume-from-checkpoint" not in names:
        args += ["--resume-from-checkpoint", "auto"]
    return shlex.join(["martlet", *args])


def make_accelerator(options: Any) -> Any:
    """An ``accelerate.Accelerator`` for ``--device`` and ``--mixed-precision``."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, PartialState
    from martlet.devices import place

    device = getattr(options, "device", None)
    cpu = place(device).device_type == "cpu"  # the accelerator record's device kind
    precision = getattr(options, "mixed_precision", "no")
    if precision in ("auto", None):  # a Trainer built without a job: the device decides
        from martlet.precision import resolve

        precision = resolve(device=device, mixed_precision="auto").mixed_precision
    placement = place(device)
    kwargs = strategy_kwargs(options, "cpu" if cpu else placement.device_type, placement)
    try:
        return Accelerator(mixed_precision=precision, cpu=cpu, **kwargs)
    except ValueError as exc:
        # accelerate keeps one process-wide state; a second run in the same (single) process
        # with another precision or device would be refused (the Python API, notebooks)
        if "already been initialized" not in str(exc) or PartialState().num_processes > 1:
            raise
        AcceleratorState._reset_state()
        return Accelerator(mixed_precision=precision, cpu=cpu, **kwargs)


def strategy_kwargs(options: Any, device: str, placement: Any = None) -> dict[str, Any]:
    """``accelerate.Accelerator``'s keyword arguments for a launched run: its parallel
    strategy's (``--parallel``; ``ddp`` on several processes), the process-group backend
    the device's accelerator record names (``gloo``, ``nccl``, a vendor's) and the
    synchronisation timeout (``--ddp-timeout``). None for one process without a strategy."""
    import datetime
    import os

    world = int(os.environ.get("WORLD_SIZE", "1"))
    strategy = parallel_strategy(options)
    if strategy is None:
        return {}
    from accelerate.utils import InitProcessGroupKwargs

    kwargs = dict(strategy.accelerator_kwargs(world_size=world, device=device))
    timeout = datetime.timedelta(seconds=int(getattr(options, "ddp_timeout", 1800)))
    handlers = list(kwargs.pop("kwargs_handlers", []))
    backend = None
    if placement is not None:  # the accelerator record says how its devices talk
        backend = getattr(placement.accelerator, "distributed_backend", lambda: None)()
    handlers.append(InitProcessGroupKwargs(backend=backend, timeout=timeout))
    kwargs["kwargs_handlers"] = handlers
    return kwargs


def parallel_strategy(options: Any) -> Any:
    """The run's parallel strategy (``--parallel``; ``ddp`` on several processes), built with
    its options; None for one process without a strategy."""
    import os

    from martlet.compose import option_values
    from martlet.manager import get_manager

    world = int(os.environ.get("WORLD_SIZE", "1"))
    name = getattr(options, "parallel", None) or ("ddp" if world > 1 else None)
    if name is None:
        return None
    record = get_manager().registry.get("parallel_strategies", name)
    return record.load()(**option_values(options, record))
