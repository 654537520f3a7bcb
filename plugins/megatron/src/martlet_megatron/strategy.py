"""The ``megatron`` parallel strategy: the loaded Hugging Face model rebuilt as Megatron-Core's
``GPTModel`` with its layers split over the tensor parallel ranks, trained through the
training loop's strategy hooks (:class:`martlet.interfaces.ParallelStrategy`).

How a step runs on ``world = TP × DP`` processes (``--nproc-per-node``):

- ``prepare``: ``parallel_state`` is initialised on the process group accelerate made (NCCL),
  the HF weights are converted to this rank's Megatron shard (:mod:`martlet_megatron.convert`)
  and loaded into a ``GPTModel`` built for the HF config (:mod:`martlet_megatron.model`).
- forward: the training loop gives every rank its own rows. The ranks of a tensor parallel
  group must compute on the same tokens, so :class:`MegatronCausalLM` gathers the group's
  micro-batches into one batch, runs the model on it (logits gathered over the vocabulary)
  and keeps this rank's rows; in the backward pass the logits' gradient is summed over the
  group (every rank's loss reaches every shard) and divided by its size, so that averaging
  over the data parallel ranks gives the gradient one process computes.
- before the optimizer step (``clip_grad_norm``, or the step's pre-hook): gradients are
  averaged over the data parallel group; with ``--sequence-parallel`` the norms' gradients are
  summed over the tensor parallel group first (Megatron's ``finalize_model_grads``).
- ``saving``: every rank's shard is gathered over its tensor parallel group; the main process
  converts the whole state back to HF names, so the run directory holds the files one process
  writes (and ``restoring``/the optimizer hooks do the reverse: checkpoints resume on any
  number of processes and on any strategy).

Pipeline and context parallelism are not trained here: the loop runs one forward and one
backward pass per micro-batch, while pipeline stages need Megatron's schedule
(``get_forward_backward_func``) and context parallelism needs the sequence split before the
loop sees the batch. ``martlet megatron convert`` writes pipeline-split checkpoints for
Megatron-LM and ms-swift.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Callable, Iterator
from typing import Any

from martlet.errors import ConfigError, MartletError

from martlet_megatron.options import check_sizes, check_world

NO_CUDA_FIX = "on this machine use --parallel fsdp or deepspeed"


class Megatron:
    """Megatron-Core tensor parallelism (and data parallelism over the remaining ranks)."""

    def __init__(
        self,
        tensor_model_parallel_size: int = 1,
        pipeline_model_parallel_size: int = 1,
        context_parallel_size: int = 1,
        sequence_parallel: bool = False,
        make_vocab_size_divisible_by: int = 128,
        **_: Any,
    ) -> None:
        check_sizes(
            tensor_model_parallel_size,
            pipeline_model_parallel_size,
            context_parallel_size,
            sequence_parallel,
            make_vocab_size_divisible_by,
        )
        self.tp = tensor_model_parallel_size
        self.pp = pipeline_model_parallel_size
        self.cp = context_parallel_size
        self.sequence_parallel = sequence_parallel
        self.divisible_by = make_vocab_size_divisible_by
        self.wrapper: MegatronCausalLM | None = None
        self._synced = False

    # ------------------------------------------------------------------ before loading

    @staticmethod
    def check(config: Any) -> None:
        """Refuse, before anything loads, what this strategy cannot train: bad sizes, a
        model family the conversion does not know, a machine without CUDA or without
        megatron-core."""
        from martlet_megatron.families import check_split, read_config, shape_of

        tp = int(getattr(config, "tensor_model_parallel_size", 1))
        pp = int(getattr(config, "pipeline_model_parallel_size", 1))
        cp = int(getattr(config, "context_parallel_size", 1))
        check_sizes(tp, pp, cp, bool(getattr(config, "sequence_parallel", False)))
        check_world(int(getattr(config, "world_size", 1)), tp, pp, cp)
        hf = read_config(str(getattr(config, "model", "") or ""))
        if hf:  # a local folder: its family now (a hub id is checked once it has loaded)
            check_split(shape_of(hf), tp, pp)
        require_cuda(getattr(config, "device", None))
        require_megatron_core()
        if pp > 1 or cp > 1:
            flag = "--pipeline-model-parallel-size" if pp > 1 else "--context-parallel-size"
            raise ConfigError(
                f"{flag} above 1 is not trained by `martlet sft` yet",
                why="the training loop runs one forward and backward pass per micro-batch; "
                "pipeline stages need Megatron's pipeline schedule and context parallelism "
                "a sequence split the loop does not make",
                fix="train with --tensor-model-parallel-size (and data parallel ranks); "
                "`martlet megatron convert --to mcore --pipeline-model-parallel-size N` "
                "writes pipeline-split checkpoints for Megatron-LM",
            )
        tuner = str(getattr(config, "tuner", "full") or "full").lower()
        if tuner != "full":
            raise ConfigError(
                f"--parallel megatron trains every weight, not --tuner {tuner}",
                why="the model is rebuilt as Megatron-Core's GPTModel, whose layers "
                "adapters (PEFT) do not wrap",
                fix="pass --tuner full, or --parallel fsdp / deepspeed for adapters",
            )
        evaluates = bool(getattr(config, "val_dataset", None)) or (
            float(getattr(config, "split_dataset_ratio", 0) or 0) > 0
        )
        if evaluates and tp > 1:
            raise ConfigError(
                "--parallel megatron does not evaluate during training with "
                "--tensor-model-parallel-size above 1",
                why="the ranks of a tensor parallel group compute every forward pass together, "
                "and the training loop may give them different numbers of evaluation batches",
                fix="leave out --val-dataset and --split-dataset-ratio (evaluate the saved "
                "model with `martlet eval`), or train with --tensor-model-parallel-size 1",
            )
        if getattr(config, "quant_method", None):
            raise ConfigError(
                "--parallel megatron does not train quantized models",
                fix="drop --quant-method (or use --parallel ddp with QLoRA)",
            )
        if str(getattr(config, "mixed_precision", "no")) == "fp16":
            raise ConfigError(
                "--parallel megatron does not train in fp16",
                why="fp16 needs a loss scaler over the sharded gradients, which this "
                "strategy does not wire",
                fix="pass --mixed-precision bf16 (or no)",
            )

    def accelerator_kwargs(self, *, world_size: int, device: str) -> dict[str, Any]:
        if device != "cuda":
            raise ConfigError(
                "Megatron-Core needs CUDA GPUs",
                why=f"this run's device is {device}",
                fix=NO_CUDA_FIX,
            )
        check_world(world_size, self.tp, self.pp, self.cp)
        return {}  # the model is wrapped by prepare(), not by accelerate

    # ------------------------------------------------------------------ the loop's hooks

    def prepare(
        self, model: Any, make_optimizer: Callable[[Any], Any], *, accelerator: Any
    ) -> tuple[Any, Any]:
        """Initialise Megatron's parallel state, build this rank's ``GPTModel`` from the HF
        model's config and converted weights; the optimizer over its parameters."""
        import torch
        import torch.distributed as dist
        from megatron.core import parallel_state, tensor_parallel

        from martlet_megatron.convert import hf_to_mcore
        from martlet_megatron.families import check_split, shape_of
        from martlet_megatron.model import build_gpt, have_transformer_engine, load_converted

        if accelerator.device.type != "cuda" or not dist.is_initialized():
            raise ConfigError(
                "Megatron-Core needs CUDA GPUs and NCCL",
                why=f"this process computes on {accelerator.device}",
                fix=NO_CUDA_FIX,
            )
        if self.sequence_parallel and not have_transformer_engine():
            raise ConfigError(
                "--sequence-parallel needs Transformer Engine",
                why="Megatron-Core's local layers (without transformer_engine) do not split "
                "their norms along the sequence",
                fix="pip install --no-build-isolation transformer_engine[pytorch], or drop "
                "--sequence-parallel",
            )
        hf_config = model.config.to_dict()
        shape = shape_of(hf_config)
        check_split(shape, self.tp, self.pp)
        if not parallel_state.model_parallel_is_initialized():
            parallel_state.initialize_model_parallel(
                tensor_model_parallel_size=self.tp, pipeline_model_parallel_size=1
            )
        tensor_parallel.model_parallel_cuda_manual_seed(int(torch.initial_seed() % 2**31))
        rank = parallel_state.get_tensor_model_parallel_rank()
        dtype = next(model.parameters()).dtype
        gpt, layout = build_gpt(
            hf_config,
            tp=self.tp,
            sequence_parallel=self.sequence_parallel,
            divisible_by=self.divisible_by,
            params_dtype=dtype,
        )
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        # the optimizer layout one process has (its checkpoints resume here, and ours there)
        reference = _group_names(model, make_optimizer(model))
        shard = hf_to_mcore(
            state, shape, tp=self.tp, divisible_by=self.divisible_by, layout=layout,
            ranks=[(0, rank)],
        )[(0, rank)]  # fmt: skip
        load_converted(gpt, shard)
        del state, shard
        model.requires_grad_(False)
        model.to("cpu" if accelerator.is_main_process else "meta")  # what saving writes through
        self.wrapper = MegatronCausalLM(gpt, model, shape, layout, self)
        self.wrapper.train()
        self.wrapper.reference_groups = reference
        optimizer = make_optimizer(self.wrapper)
        optimizer.register_step_pre_hook(lambda *_: self.finish_grad_sync(self.wrapper))
        return self.wrapper, optimizer

    @contextlib.contextmanager
    def no_sync(self, model: Any) -> Iterator[None]:
        """Gradients are reduced once per step, before the optimizer step: nothing to hold."""
        yield

    def finish_grad_sync(self, model: Any) -> None:
        """Sum sequence-parallel norm gradients over the tensor parallel group, then average
        every gradient over the data parallel group (once per step)."""
        import torch.distributed as dist
        from megatron.core import parallel_state

        if self._synced:
            self._synced = False
            return
        gpt = model.gpt
        grads = [p.grad for p in gpt.parameters() if p.grad is not None]
        if self.sequence_parallel and self.tp > 1:
            norms = [
                p.grad
                for p in gpt.parameters()
                if p.grad is not None and getattr(p, "sequence_parallel", False)
            ]
            _all_reduce(norms, parallel_state.get_tensor_model_parallel_group(), average=False)
        group = parallel_state.get_data_parallel_group()
        if dist.get_world_size(group) > 1:
            _all_reduce(grads, group, average=True)

    def clip_grad_norm(self, model: Any, max_norm: float) -> float:
        """Reduce the step's gradients, then clip them to ``max_norm``; the norm of the whole
        gradient (each tensor parallel shard counted once)."""
        import torch
        import torch.distributed as dist
        from megatron.core import parallel_state
        from megatron.core.tensor_parallel import param_is_not_tensor_parallel_duplicate

        self.finish_grad_sync(model)
        self._synced = True  # the optimizer step's pre-hook must not reduce them again
        params = [p for p in model.gpt.parameters() if p.grad is not None]
        device = params[0].grad.device if params else torch.device("cuda")
        total = torch.zeros((), dtype=torch.float32, device=device)
        for p in params:
            if param_is_not_tensor_parallel_duplicate(p):
                total += p.grad.detach().float().pow(2).sum()
        dist.all_reduce(total, group=parallel_state.get_model_parallel_group())
        norm = float(total.sqrt())
        coefficient = max_norm / (norm + 1e-6)
        if coefficient < 1:
            for p in params:
                p.grad.detach().mul_(coefficient)
        return norm

    @contextlib.contextmanager
    def saving(self, model: Any) -> Iterator[None]:
        """Every rank gathers its tensor parallel group's shards; inside, the main process's
        ``model.state_dict()`` and ``model.save_pretrained`` are the whole HF model."""
        import torch.distributed as dist

        from martlet_megatron.convert import mcore_to_hf

        shards = model.gather_shards(_params_state(model.gpt))
        whole = None
        if dist.get_rank() == 0:
            whole = mcore_to_hf(shards, model.shape)
            model.hf.load_state_dict(whole, strict=False)
        model.whole = whole
        try:
            yield
        finally:
            model.whole = None

    @contextlib.contextmanager
    def restoring(self, model: Any) -> Iterator[None]:
        """Inside, ``model.load_state_dict`` takes whole HF tensors and loads this rank's
        shard of them (every rank enters)."""
        model.restoring = True
        try:
            yield
        finally:
            model.restoring = False

    def optimizer_state_dict(self, model: Any, optimizer: Any) -> dict[str, Any]:
        """The whole optimizer state in one process's layout (HF parameters in the order a
        single process's optimizer holds them); a collective, the result on the main
        process."""
        import torch.distributed as dist

        from martlet_megatron.convert import mcore_to_hf

        names = {id(p): n for n, p in model.gpt.named_parameters()}
        per_param = {names[id(p)]: s for p, s in optimizer.state.items() if id(p) in names}
        if not per_param:
            return {}
        keys = sorted({k for s in per_param.values() for k, v in s.items() if _shaped(v, s)})
        whole: dict[str, dict[str, Any]] = {}
        for key in keys:
            local = {n: s[key] for n, s in per_param.items()}
            shards = model.gather_shards({**_params_state(model.gpt), **local})
            if dist.get_rank() == 0:
                for name, tensor in mcore_to_hf(shards, model.shape).items():
                    whole.setdefault(name, {})[key] = tensor
        if dist.get_rank() != 0:
            return {}
        scalars = {
            k: v.detach().cpu() if hasattr(v, "detach") else v
            for k, v in next(iter(per_param.values())).items()
            if k not in keys
        }
        order = [n for group in model.reference_groups for n in group]
        state = {i: {**scalars, **whole[n]} for i, n in enumerate(order) if n in whole}
        groups, start = [], 0
        for live, names_ in zip(optimizer.param_groups, model.reference_groups, strict=True):
            hyper = {k: v for k, v in live.items() if k != "params"}
            groups.append({**hyper, "params": list(range(start, start + len(names_)))})
            start += len(names_)
        return {"state": state, "param_groups": groups}

    def load_optimizer_state_dict(self, model: Any, optimizer: Any, state: dict) -> None:
        """Load one process's optimizer state (what :meth:`optimizer_state_dict` saved, or a
        single process's run) into this rank's shards; every rank."""
        import torch
        from megatron.core import parallel_state

        from martlet_megatron.convert import hf_to_mcore

        rank = parallel_state.get_tensor_model_parallel_rank()
        order = [n for group in model.reference_groups for n in group]
        if len(order) != sum(len(g["params"]) for g in state["param_groups"]):
            raise MartletError(
                "the checkpoint's optimizer state does not fit this model",
                why=f"it holds {sum(len(g['params']) for g in state['param_groups'])} "
                f"parameters, the model {len(order)}",
                fix="resume from a checkpoint of the same model and tuner",
            )
        for live, saved in zip(optimizer.param_groups, state["param_groups"], strict=True):
            live.update({k: v for k, v in saved.items() if k != "params"})
        entries = {order[int(i)]: s for i, s in state["state"].items()}
        if not entries:  # saved before the first step: nothing more to load
            return
        first = next(iter(entries.values()))
        keys = [k for k, v in first.items() if torch.is_tensor(v) and v.dim() > 0]
        scalars = {k: v for k, v in first.items() if k not in keys}
        params = dict(model.gpt.named_parameters())
        hf_weights = {k: v for k, v in model.hf.state_dict().items()}
        for key in keys:
            hf = {**hf_weights, **{n: s[key] for n, s in entries.items()}}
            shard = hf_to_mcore(
                hf, model.shape, tp=self.tp, divisible_by=self.divisible_by,
                layout=model.layout, ranks=[(0, rank)],
            )[(0, rank)]  # fmt: skip
            for name, param in params.items():
                slot = optimizer.state.setdefault(param, {})
                slot[key] = shard[name].to(device=param.device, dtype=param.dtype)
        for param in params.values():
            for k, v in scalars.items():
                slot = optimizer.state.setdefault(param, {})
                slot[k] = v.clone() if torch.is_tensor(v) else v


def require_cuda(device: Any = None) -> None:
    """A ConfigError unless this machine has a CUDA GPU (and the run is on it)."""
    import torch

    wanted = str(device or "").split(":")[0]
    if not torch.cuda.is_available() or wanted not in ("", "auto", "cuda"):
        raise ConfigError(
            "--parallel megatron needs CUDA GPUs",
            why="Megatron-Core needs CUDA GPUs and NCCL"
            + ("" if torch.cuda.is_available() else "; this machine has no CUDA GPU")
            + (f"; this run's device is {wanted}" if wanted not in ("", "auto", "cuda") else ""),
            fix=NO_CUDA_FIX,
        )


def require_megatron_core() -> None:
    """A ConfigError unless ``megatron.core`` is importable."""
    try:
        found = importlib.util.find_spec("megatron.core") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise ConfigError(
            "--parallel megatron needs Megatron-Core, which is not installed",
            why="the strategy builds Megatron-Core's GPTModel",
            fix="pip install megatron-core (or pip install 'martlet-megatron[mcore]'); "
            "Transformer Engine is optional (pip install --no-build-isolation "
            "transformer_engine[pytorch])",
        )


# ---------------------------------------------------------------------- the model wrapper


def _base_module() -> type:
    import torch

    return torch.nn.Module


class MegatronCausalLM(_base_module()):  # type: ignore[misc]
    """What the training loop holds: Megatron-Core's ``GPTModel`` behind the calls the loop,
    the losses and the tuner make on a HF causal LM (``model(input_ids=...).logits``,
    ``save_pretrained``, ``load_state_dict`` of HF names while restoring)."""

    def __init__(self, gpt: Any, hf: Any, shape: Any, layout: str, strategy: Megatron) -> None:
        super().__init__()
        self.gpt = gpt
        object.__setattr__(self, "hf", hf)  # not a submodule: its weights are not trained
        self.shape = shape
        self.layout = layout
        self.strategy = strategy
        self.whole: dict[str, Any] | None = None
        self.restoring = False
        self.reference_groups: list[list[str]] = []

    @property
    def config(self) -> Any:
        return self.hf.config

    @property
    def generation_config(self) -> Any:
        return getattr(self.hf, "generation_config", None)

    def forward(
        self,
        input_ids: Any,
        attention_mask: Any = None,
        position_ids: Any = None,
        **_: Any,
    ) -> Any:
        """``.logits`` ``[batch, seq, vocab]`` like a HF causal LM's. Rows are right-padded
        (a 2-D ``attention_mask``: causal attention never lets a token see the padding after
        it); packed rows (``position_ids`` restarting at 0 for each segment, what ``--packing``
        and ``--padding-free`` collate) are unpacked into one row per segment, so no segment
        attends to another, and the logits packed back."""
        from transformers.modeling_outputs import CausalLMOutputWithPast

        segments = _segments(position_ids) if position_ids is not None else None
        if segments is not None:  # packed (or padding-free) rows: one padded row a segment
            input_ids = _unpack(input_ids, segments)
        logits = self._own_logits(input_ids)
        if segments is not None:
            logits = _repack(logits, segments, position_ids.shape)
        return CausalLMOutputWithPast(logits=logits)

    def _own_logits(self, input_ids: Any) -> Any:
        """This rank's rows' logits, computed with the rows of its tensor parallel group."""
        import torch
        import torch.distributed as dist
        from megatron.core import parallel_state

        tp = self.strategy.tp
        group = parallel_state.get_tensor_model_parallel_group()
        rows, length = input_ids.shape
        sizes = torch.tensor([rows, length], device=input_ids.device)
        gathered = [torch.zeros_like(sizes) for _ in range(tp)]
        dist.all_gather(gathered, sizes, group=group)
        counts = [int(s[0]) for s in gathered]
        width = max(int(s[1]) for s in gathered)
        if self.strategy.sequence_parallel:  # the sequence splits evenly over the ranks
            width = -(-width // tp) * tp
        top = max(counts)
        ids = input_ids.new_zeros((top, width))
        ids[:rows, :length] = input_ids
        parts = [torch.empty_like(ids) for _ in range(tp)]
        dist.all_gather(parts, ids, group=group)
        batch = torch.cat([p[:n] for p, n in zip(parts, counts, strict=True)])
        positions = torch.arange(width, device=batch.device).unsqueeze(0).expand_as(batch)
        causal = torch.triu(
            torch.ones(width, width, dtype=torch.bool, device=batch.device), diagonal=1
        )
        logits = self.gpt(
            input_ids=batch, position_ids=positions, attention_mask=causal[None, None]
        )
        logits = logits[..., : self.shape.vocab_size]
        me = parallel_state.get_tensor_model_parallel_rank()
        start = sum(counts[:me])
        return _OwnRows.apply(logits, start, rows, length, group, tp)

    def gather_shards(self, local: dict[str, Any]) -> dict[tuple[int, int], dict[str, Any]]:
        """This rank's tensors (Megatron names) gathered over its tensor parallel group, on
        the CPU: ``{(0, tensor rank): state}`` (a collective)."""
        import torch
        import torch.distributed as dist
        from megatron.core import parallel_state

        tp = self.strategy.tp
        group = parallel_state.get_tensor_model_parallel_group()
        out: dict[tuple[int, int], dict[str, Any]] = {(0, t): {} for t in range(tp)}
        for name in sorted(local):
            tensor = local[name].detach().contiguous()
            parts = [torch.empty_like(tensor) for _ in range(tp)] if tp > 1 else [tensor]
            if tp > 1:
                dist.all_gather(parts, tensor, group=group)
            for t, part in enumerate(parts):
                out[(0, t)][name] = part.cpu()
        return out

    def state_dict(self, *args: Any, **kwargs: Any) -> Any:
        if self.whole is not None:  # inside the strategy's saving(): the whole HF state
            return dict(self.whole)
        return super().state_dict(*args, **kwargs)

    def save_pretrained(self, output_dir: str, **kwargs: Any) -> None:
        if self.whole is None:
            raise MartletError(
                "a Megatron model saves inside the strategy's saving() context",
                why="its weights are spread over the tensor parallel ranks",
            )
        self.hf.save_pretrained(output_dir, **kwargs)  # saving() loaded the whole state

    def load_state_dict(self, state: Any, strict: bool = True, assign: bool = False) -> Any:
        if not self.restoring:
            return super().load_state_dict(state, strict=strict, assign=assign)
        from megatron.core import parallel_state
        from torch.nn.modules.module import _IncompatibleKeys

        from martlet_megatron.convert import hf_to_mcore
        from martlet_megatron.model import load_converted

        rank = parallel_state.get_tensor_model_parallel_rank()
        shard = hf_to_mcore(
            state, self.shape, tp=self.strategy.tp, divisible_by=self.strategy.divisible_by,
            layout=self.layout, ranks=[(0, rank)],
        )[(0, rank)]  # fmt: skip
        load_converted(self.gpt, shard)
        return _IncompatibleKeys([], [])


def _own_rows_function() -> type:
    import torch

    class OwnRows(torch.autograd.Function):
        """This rank's rows of the tensor parallel group's logits; backward: the group's
        summed gradient, divided by its size (see the module's docstring)."""

        @staticmethod
        def forward(ctx: Any, logits: Any, start: int, rows: int, length: int, group: Any, tp: int):
            ctx.shape, ctx.dtype = logits.shape, logits.dtype
            ctx.where = (start, rows, length)
            ctx.group, ctx.tp = group, tp
            return logits[start : start + rows, :length].clone()

        @staticmethod
        def backward(ctx: Any, grad: Any):
            import torch.distributed as dist

            start, rows, length = ctx.where
            whole = grad.new_zeros(ctx.shape)
            whole[start : start + rows, :length] = grad
            if ctx.tp > 1:
                dist.all_reduce(whole, group=ctx.group)
                whole.div_(ctx.tp)
            return whole, None, None, None, None, None

    return OwnRows


class _LazyOwnRows:
    _fn: Any = None

    def apply(self, *args: Any) -> Any:
        if _LazyOwnRows._fn is None:
            _LazyOwnRows._fn = _own_rows_function()
        return _LazyOwnRows._fn.apply(*args)


_OwnRows = _LazyOwnRows()


# ---------------------------------------------------------------------- helpers


def _segments(position_ids: Any) -> list[tuple[int, int, int]] | None:
    """``(row, start, end)`` of every segment of packed rows (a segment starts where its
    position is 0); None when every row is one segment."""
    found = []
    for row, positions in enumerate(position_ids.tolist()):
        starts = [t for t, p in enumerate(positions) if p == 0 or t == 0]
        ends = starts[1:] + [len(positions)]
        found.extend((row, s, e) for s, e in zip(starts, ends, strict=True))
    return found if len(found) > len(position_ids) else None


def _unpack(input_ids: Any, segments: list[tuple[int, int, int]]) -> Any:
    """One right-padded row per segment."""
    width = max(e - s for _, s, e in segments)
    out = input_ids.new_zeros((len(segments), width))
    for i, (row, s, e) in enumerate(segments):
        out[i, : e - s] = input_ids[row, s:e]
    return out


def _repack(logits: Any, segments: list[tuple[int, int, int]], shape: Any) -> Any:
    """The segments' logits back in the packed rows' layout."""
    import torch

    rows = [[] for _ in range(shape[0])]
    for i, (row, s, e) in enumerate(segments):
        rows[row].append(logits[i, : e - s])
    return torch.stack([torch.cat(parts) for parts in rows])


def _params_state(gpt: Any) -> dict[str, Any]:
    return {n: p for n, p in gpt.named_parameters()}


def _shaped(value: Any, state: dict) -> bool:
    """An optimizer state entry shaped like its parameter (``exp_avg``), not a scalar."""
    return hasattr(value, "dim") and value.dim() > 0


def _group_names(model: Any, optimizer: Any) -> list[list[str]]:
    """The parameter names of each group of ``optimizer`` (built over the HF ``model``): the
    layout a single process's optimizer state has."""
    if optimizer is None:
        return []
    names = {id(p): n for n, p in model.named_parameters()}
    return [[names[id(p)] for p in group["params"]] for group in optimizer.param_groups]


def _all_reduce(tensors: list[Any], group: Any, *, average: bool) -> None:
    """All-reduce ``tensors`` over ``group`` in flat buckets of one dtype."""
    import torch.distributed as dist
    from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

    size = dist.get_world_size(group)
    by_dtype: dict[Any, list[Any]] = {}
    for tensor in tensors:
        by_dtype.setdefault(tensor.dtype, []).append(tensor)
    for bucket in by_dtype.values():
        flat = _flatten_dense_tensors(bucket)
        dist.all_reduce(flat, group=group)
        if average:
            flat.div_(size)
        for tensor, reduced in zip(bucket, _unflatten_dense_tensors(flat, bucket), strict=True):
            tensor.copy_(reduced)
