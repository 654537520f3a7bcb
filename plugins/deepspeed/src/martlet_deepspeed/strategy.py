"""The deepspeed parallel strategy: DeepSpeed's ZeRO engine driven through the training loop's
strategy hooks (accelerate runs DeepSpeed only on GPUs; this runs it on every device)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from martlet.errors import ConfigError

from martlet_deepspeed import config as ds_config


class DeepSpeed:
    """ZeRO stage 1, 2 or 3 through ``deepspeed.initialize``.

    ``prepare`` hands the model and the run's optimizer (its parameter groups and settings;
    DeepSpeed's CPU Adam in their place when the optimizer state is offloaded) to
    ``deepspeed.initialize``; the engine partitions the optimizer state (stage 1), the
    gradients (2) and the parameters (3) over the processes. Each micro-batch's backward pass
    goes through ``engine.backward`` (gradients reduced and partitioned as they come), the step
    through ``engine.step`` (clipping, the optimizer step on each rank's partition, the
    all-gather of the updated parameters, zeroing); the run's learning-rate schedule drives
    the engine's optimizer. Saving gathers whole tensors (stage 3:
    ``deepspeed.zero.GatheredParameters``) so the main process writes the files one process
    writes; the optimizer state is saved and loaded whole, in one process's layout
    (``deepspeed.utils.safe_get_full_optimizer_state`` and ``safe_set_...``), so a checkpoint
    resumes on any number of processes and on any strategy.
    """

    def __init__(
        self,
        deepspeed: str = "zero2",
        per_device_train_batch_size: int = 1,
        gradient_accumulation_steps: int = 1,
        max_grad_norm: float = 1.0,
        **_: Any,
    ) -> None:
        self.name = deepspeed
        self.config = ds_config.read(deepspeed)
        self.micro_batch = int(per_device_train_batch_size)
        self.accumulation = int(gradient_accumulation_steps)
        self.max_grad_norm = float(max_grad_norm or 0.0)
        self.engine: Any = None
        #: the run's optimizer's parameters, group by group (one process's layout), and the
        #: settings of each group
        self.layout: list[list[Any]] = []
        self.settings: list[dict[str, Any]] = []
        #: the dtype of every tensor of the model before the engine (saved as it was)
        self.dtypes: dict[str, Any] = {}
        #: contexts held for the whole run (an operation offered in place of a kernel's)
        self._kept = contextlib.ExitStack()

    @property
    def stage(self) -> int:
        return ds_config.stage(self.config)

    # ------------------------------------------------------------- before anything loads

    @staticmethod
    def check(config: Any) -> None:
        """Refuse what DeepSpeed cannot train here, before anything loads."""
        ds_config.read(getattr(config, "deepspeed", "zero2"))  # a bad preset or file fails now
        if str(getattr(config, "mixed_precision", "no")) == "fp16":
            raise ConfigError(
                "--parallel deepspeed does not train in fp16",
                why="fp16 needs DeepSpeed's loss scaler, which this strategy does not wire",
                fix="pass --mixed-precision bf16 (or no)",
            )
        optim = str(getattr(config, "optim", "adamw"))
        if optim != "adamw":
            raise ConfigError(
                f"--optim {optim} does not train under --parallel deepspeed",
                why="ZeRO hands the optimizer flat partitions of the parameters; this strategy "
                "runs AdamW on them (DeepSpeed's CPU Adam when the optimizer is offloaded)",
                fix="pass --optim adamw (the default)",
            )
        from martlet.manager import get_manager

        tuner_name = getattr(config, "tuner", None)
        if tuner_name:
            record = get_manager().registry.find("tuners", tuner_name)
            tuner = record.load() if record is not None else None
            if tuner is not None and getattr(tuner, "on_step", None) is not None:
                raise ConfigError(
                    f"--tuner {tuner_name} does not train under --parallel deepspeed",
                    why="it changes which parameters train, or reads their gradients, between "
                    "steps (on_step); ZeRO partitions a fixed set of trainable parameters and "
                    "keeps their gradients in its own buffers",
                    fix="train it with --parallel ddp or fsdp, or on one process",
                )

    def accelerator_kwargs(self, *, world_size: int, device: str) -> dict[str, Any]:
        return {}  # the engine wraps the model in prepare(), not accelerate

    # ------------------------------------------------------------- the loop's hooks

    def prepare(
        self, model: Any, make_optimizer: Callable[[Any], Any], *, accelerator: Any
    ) -> tuple[Any, Any]:
        """``deepspeed.initialize`` with the run's optimizer; returns the engine and the
        optimizer the learning-rate schedule drives (the engine's own)."""
        import deepspeed
        import torch

        precision = str(getattr(accelerator, "mixed_precision", "no"))
        if precision not in ("no", "None", "bf16"):
            raise ConfigError(
                f"--parallel deepspeed does not train in {precision}",
                fix="pass --mixed-precision bf16 (or no)",
            )
        self.dtypes = {name: t.dtype for name, t in model.state_dict().items()}
        trainable = {p.dtype for p in model.parameters() if p.requires_grad}
        if torch.float16 in trainable:
            raise ConfigError(
                "--parallel deepspeed does not train float16 weights",
                why="fp16 needs DeepSpeed's loss scaler, which this strategy does not wire",
                fix="load the model in bfloat16 or float32 (--torch-dtype)",
            )
        if len(trainable) > 1:
            raise ConfigError(
                "--parallel deepspeed trains weights of one dtype",
                why=f"the trainable weights are {sorted(str(t) for t in trainable)}; ZeRO "
                "keeps them in flat buffers of one dtype",
                fix="load the model in one dtype (--torch-dtype)",
            )
        hidden = getattr(getattr(model, "config", None), "hidden_size", None)
        config = ds_config.filled(
            self.config,
            micro_batch=self.micro_batch,
            accumulation=self.accumulation,
            world_size=accelerator.num_processes,
            max_grad_norm=self.max_grad_norm,
            bf16=torch.bfloat16 in trainable,
            hidden_size=int(hidden) if hidden else None,
        )
        optimizer = make_optimizer(model)
        if type(optimizer) not in (torch.optim.AdamW, torch.optim.Adam):
            raise ConfigError(
                f"--parallel deepspeed does not train with {type(optimizer).__name__}",
                why="ZeRO hands the optimizer flat partitions of the parameters; this "
                "strategy runs Adam(W) on them (the tuner brings its own optimizer)",
                fix="choose another tuner, or train it with --parallel ddp or fsdp",
            )
        self.layout = [list(group["params"]) for group in optimizer.param_groups]
        self.settings = [
            {k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups
        ]
        if ds_config.offloads(config)[0]:
            optimizer = cpu_adam(optimizer)
        model = model.to(accelerator.device)
        engine, engine_optimizer, _, _ = deepspeed.initialize(
            model=model, optimizer=optimizer, config=config, dist_init_required=False
        )
        self.engine = engine
        if self.stage == 3:
            self._head_as_module(model)
        engine.set_gradient_accumulation_boundary(True)
        return engine, engine.basic_optimizer

    def _head_as_module(self, model: Any) -> None:
        """ZeRO-3 gathers a layer's parameters around its own forward and backward passes
        only; a kernel that computes the output layer with the loss
        (``output_cross_entropy``) reads the layer's weight outside them. In its place here:
        the output layer called as a module, then the summed cross-entropy (what the loss
        computes without the kernel)."""
        from martlet.kernels import provide, provided

        get_head = getattr(model, "get_output_embeddings", None)
        head = get_head() if callable(get_head) else None
        if provided(model, "output_cross_entropy") is None or head is None:
            return

        def through_head(hidden: Any, targets: Any) -> Any:
            import torch.nn.functional as F

            return F.cross_entropy(head(hidden).float(), targets, reduction="sum")

        self._kept.enter_context(provide(model, "output_cross_entropy", through_head))

    @contextlib.contextmanager
    def no_sync(self, model: Any) -> Iterator[None]:
        """A micro-batch before the step's last: not a gradient accumulation boundary."""
        model.set_gradient_accumulation_boundary(False)
        try:
            yield
        finally:
            model.set_gradient_accumulation_boundary(True)

    def backward(self, model: Any, loss: Any) -> None:
        """The engine's backward pass (the loop already divided the loss for accumulation)."""
        model.backward(loss, scale_wrt_gas=False)

    def step(self, model: Any, optimizer: Any, max_norm: float) -> float | None:
        """The engine's step: clip to the configured norm, step each rank's partition, gather
        the updated parameters, zero the gradients. The norm of the whole gradient (before
        clipping) when clipping."""
        model.step()
        if not max_norm or max_norm <= 0:
            return None
        norm = model.get_global_grad_norm()
        return float(norm) if norm is not None else None

    # ------------------------------------------------------------- saving and restoring

    def _tensors(self, module: Any) -> dict[str, Any]:
        """The module's parameters and buffers by state-dict name (the tensors themselves)."""
        return type(module).state_dict(module, keep_vars=True)

    @contextlib.contextmanager
    def saving(self, model: Any) -> Iterator[None]:
        """Every rank gathers each partitioned parameter (stage 3; a collective); inside,
        ``module.state_dict()`` is the whole state on the main process, in the dtypes the
        model had, so the tuner's ``save`` writes the files one process writes."""
        import deepspeed
        import torch

        module = model.module
        main = torch.distributed.get_rank() == 0 if torch.distributed.is_initialized() else True
        whole: dict[str, Any] = {}
        done: dict[int, Any] = {}
        for name, tensor in self._tensors(module).items():
            if id(tensor) not in done:
                if hasattr(tensor, "ds_id"):  # a ZeRO-3 partition: gathered for the copy
                    with deepspeed.zero.GatheredParameters([tensor], modifier_rank=None):
                        done[id(tensor)] = tensor.detach().to("cpu", copy=True) if main else None
                else:
                    done[id(tensor)] = tensor.detach().to("cpu", copy=True) if main else None
            value = done[id(tensor)]
            if value is not None:
                dtype = self.dtypes.get(name)
                whole[name] = value.to(dtype) if dtype is not None else value

        def state_dict(*args: Any, **kwargs: Any) -> dict[str, Any]:
            return dict(whole)

        module.state_dict = state_dict
        try:
            yield
        finally:
            del module.state_dict

    @contextlib.contextmanager
    def restoring(self, model: Any) -> Iterator[None]:
        """Inside, ``module.load_state_dict`` takes whole tensors (what a checkpoint holds):
        each goes into the parameter (stage 3: its partitions) and into the optimizer's
        float32 copy; every rank enters it."""
        import deepspeed
        import torch
        from deepspeed.utils import safe_set_full_fp32_param
        from torch.nn.modules.module import _IncompatibleKeys

        module = model.module

        def load_state_dict(state: dict[str, Any], strict: bool = True, assign: bool = False):
            mine = self._tensors(module)
            with torch.no_grad():
                for name, value in state.items():
                    target = mine.get(name)
                    if target is None:
                        continue
                    if hasattr(target, "ds_id"):  # every rank holds ``value``: rank 0 writes
                        with deepspeed.zero.GatheredParameters([target], modifier_rank=0):
                            target.data.copy_(value.to(target.device, target.dtype))
                    else:
                        target.data.copy_(value.to(target.device, target.dtype))
                    if isinstance(target, torch.nn.Parameter) and target.requires_grad:
                        safe_set_full_fp32_param(target, value.to(target.device, torch.float32))
            missing = [k for k in mine if k not in state]
            unexpected = [k for k in state if k not in mine]
            if strict and (missing or unexpected):
                raise RuntimeError(f"missing keys {missing[:3]}, unexpected keys {unexpected[:3]}")
            return _IncompatibleKeys(missing, unexpected)

        module.load_state_dict = load_state_dict
        try:
            yield
        finally:
            del module.load_state_dict

    def optimizer_state_dict(self, model: Any, optimizer: Any) -> dict[str, Any]:
        """The whole optimizer state in the layout of one process's AdamW ``state_dict()``
        (on the main process; every rank calls it: a collective)."""
        import torch
        from deepspeed.utils import safe_get_full_optimizer_state

        main = torch.distributed.get_rank() == 0 if torch.distributed.is_initialized() else True
        step = _steps(optimizer)
        state: dict[int, dict[str, Any]] = {}
        groups = []
        index = 0
        for params, settings, live in zip(
            self.layout, self.settings, optimizer.param_groups, strict=True
        ):
            ids = []
            for param in params:
                ids.append(index)
                moments = {}
                for key in ("exp_avg", "exp_avg_sq"):
                    value = (
                        safe_get_full_optimizer_state(param, key) if param.requires_grad else None
                    )
                    if value is not None:
                        moments[key] = (
                            value.detach()
                            .reshape(param.ds_shape if hasattr(param, "ds_shape") else param.shape)
                            .to("cpu", torch.float32, copy=True)
                        )
                if main and len(moments) == 2 and step:
                    state[index] = {"step": torch.tensor(float(step)), **moments}
                index += 1
            group = dict(settings)
            for key in ("lr", "initial_lr"):
                if key in live:
                    group[key] = live[key]
            groups.append({**group, "params": ids})
        if not main:
            return {}
        return {"state": state, "param_groups": groups}

    def load_optimizer_state_dict(self, model: Any, optimizer: Any, state: dict) -> None:
        """Load what :meth:`optimizer_state_dict` (or one process's AdamW) saved; every rank."""
        import torch
        from deepspeed.utils import safe_set_full_optimizer_state

        params = [p for group in self.layout for p in group]
        saved = {int(i): value for i, value in state.get("state", {}).items()}
        steps = {int(float(v["step"])) for v in saved.values() if "step" in v}
        zero = self.engine.optimizer
        _init_moments(zero, optimizer, max(steps) if steps else 0)
        lazy = getattr(zero, "_lazy_init_hp_params_optimizer_state", None)
        if lazy is not None:  # stage 1/2: link each parameter to its piece of the state
            lazy()
        for i, param in enumerate(params):
            if i not in saved or not param.requires_grad:
                continue
            for key in ("exp_avg", "exp_avg_sq"):
                value = saved[i][key].to(torch.float32).flatten()
                safe_set_full_optimizer_state(param, value, key)
        for live, group in zip(optimizer.param_groups, state.get("param_groups", []), strict=False):
            for key, value in group.items():
                if key != "params" and key in live:
                    live[key] = value


def cpu_adam(optimizer: Any) -> Any:
    """DeepSpeed's CPU Adam with the groups and settings of the run's Adam(W) (what ZeRO-Offload
    steps the optimizer state with; compiled on first use)."""
    import torch
    from deepspeed.ops.adam import DeepSpeedCPUAdam

    defaults = optimizer.defaults
    groups = [
        {
            "params": group["params"],
            "lr": group["lr"],
            "betas": group["betas"],
            "eps": group["eps"],
            "weight_decay": group["weight_decay"],
        }
        for group in optimizer.param_groups
    ]
    return DeepSpeedCPUAdam(
        groups,
        lr=defaults["lr"],
        betas=defaults["betas"],
        eps=defaults["eps"],
        weight_decay=defaults["weight_decay"],
        adamw_mode=isinstance(optimizer, torch.optim.AdamW),
    )


def _steps(optimizer: Any) -> int:
    """The optimizer steps taken (the ``step`` of its state; 0 before the first)."""
    for value in optimizer.state.values():
        if "step" in value:
            return int(float(value["step"]))
    return 0


def _init_moments(zero: Any, optimizer: Any, step: int) -> None:
    """Create the optimizer's state for each flat partition it steps (as its first step
    would), at ``step``: what loading fills. ``zero`` is the engine's ZeRO optimizer (stage 3
    empties the groups of ``optimizer`` between steps and keeps its partitions itself)."""
    import torch

    flats = getattr(zero, "fp32_partitioned_groups_flat", None)
    if flats is None:
        flats = [flat for group in optimizer.param_groups for flat in group["params"]]
    fused = any(g.get("fused") or g.get("capturable") for g in optimizer.param_groups)
    torch_adam = type(optimizer) in (torch.optim.AdamW, torch.optim.Adam)
    for flat in flats:
        current = optimizer.state[flat]
        if "exp_avg" not in current:
            current["exp_avg"] = torch.zeros_like(flat, dtype=torch.float32)
            current["exp_avg_sq"] = torch.zeros_like(flat, dtype=torch.float32)
        if not torch_adam:  # DeepSpeed's CPU Adam counts in an int
            current["step"] = step
        elif fused:
            current["step"] = torch.tensor(float(step), dtype=torch.float32, device=flat.device)
        else:
            current["step"] = torch.tensor(float(step))
