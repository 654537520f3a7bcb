"""The parallel strategies: ddp (what accelerate needs to know to run it) and fsdp (PyTorch
FSDP2 ``fully_shard``, applied by the strategy itself through the training loop's hooks)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from martlet.errors import ConfigError


class Ddp:
    """DistributedDataParallel through accelerate."""

    def __init__(
        self, ddp_find_unused_parameters: bool = False, ddp_bucket_cap_mb: int = 25, **_: Any
    ) -> None:
        self.find_unused = ddp_find_unused_parameters
        self.bucket_cap_mb = ddp_bucket_cap_mb

    def accelerator_kwargs(self, *, world_size: int, device: str) -> dict[str, Any]:
        from accelerate.utils import DistributedDataParallelKwargs

        handler = DistributedDataParallelKwargs(
            find_unused_parameters=self.find_unused, bucket_cap_mb=self.bucket_cap_mb
        )
        return {"kwargs_handlers": [handler]}


class Fsdp:
    """Fully sharded data parallel (FSDP2): every process holds 1/N of each parameter, its
    gradient and its optimizer state; a decoder layer's parameters are gathered for its
    forward and backward pass only.

    accelerate applies FSDP only on GPUs (on a CPU it would silently run DDP), so this
    strategy wraps the model itself, on every device, with ``torch.distributed.fsdp.
    fully_shard``: each decoder layer (the model's ``_no_split_modules`` classes), then the
    root. Saving gathers the whole state on every rank and the main process writes the same
    files one process writes; restoring shards whole tensors back.
    """

    def __init__(
        self,
        fsdp_reshard_after_forward: bool = True,
        fsdp_cpu_offload: bool = False,
        **_: Any,
    ) -> None:
        self.reshard_after_forward = fsdp_reshard_after_forward
        self.cpu_offload = fsdp_cpu_offload
        #: the dtypes of the model's tensors where prepare() changed them (saved as they were)
        self.dtypes: dict[str, Any] = {}

    @staticmethod
    def check(config: Any) -> None:
        """Refuse what FSDP cannot train here, before anything loads."""
        from martlet.devices import place

        if int(getattr(config, "world_size", 2)) < 2:
            raise ConfigError(
                "--parallel fsdp needs more than one process",
                why="it shards the model over the run's processes; one process holds it whole",
                fix="pass --nproc-per-node 2 (or more), or leave --parallel fsdp out",
            )
        if getattr(config, "fsdp_cpu_offload", False):
            if place(getattr(config, "device", None)).device_type == "cpu":
                raise ConfigError(
                    "--fsdp-cpu-offload has nothing to offload on a CPU",
                    why="it moves the sharded parameters, gradients and optimizer state from "
                    "the accelerator's memory to the CPU's, and this run trains on the CPU",
                    fix="drop --fsdp-cpu-offload (or train on a GPU: --device cuda)",
                )
        if str(getattr(config, "mixed_precision", "no")) == "fp16":
            raise ConfigError(
                "--parallel fsdp does not train in fp16",
                why="fp16 needs a loss scaler over the sharded gradients, which this strategy "
                "does not wire",
                fix="pass --mixed-precision bf16 (or no)",
            )

    def accelerator_kwargs(self, *, world_size: int, device: str) -> dict[str, Any]:
        return {}  # the model is wrapped by prepare(), not by accelerate

    # ------------------------------------------------------------- the loop's hooks

    def prepare(
        self, model: Any, make_optimizer: Callable[[Any], Any], *, accelerator: Any
    ) -> tuple[Any, Any]:
        """Shard each decoder layer, then the root; the optimizer over the sharded
        parameters."""
        import torch
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, fully_shard

        device = accelerator.device
        kwargs: dict[str, Any] = {"reshard_after_forward": self.reshard_after_forward}
        precision = str(getattr(accelerator, "mixed_precision", "no"))
        if precision not in ("no", "None", "bf16"):
            raise ConfigError(
                f"--parallel fsdp does not train in {precision}",
                fix="pass --mixed-precision bf16 (or no)",
            )
        if precision == "bf16" and device.type != "cpu":
            # gathered in bf16 for the forward and backward pass, gradients reduced in fp32
            kwargs["mp_policy"] = MixedPrecisionPolicy(
                param_dtype=torch.bfloat16, reduce_dtype=torch.float32
            )
        if device.type == "cpu" and any(
            p.is_floating_point() and p.dtype != torch.float32 for p in model.parameters()
        ):
            # FSDP2 over gloo cannot free the gathered copies of bf16 (or fp16) parameters:
            # on a CPU the shards are kept in float32 and bf16 is accelerate's autocast
            self.dtypes = {name: p.dtype for name, p in model.state_dict().items()}
            model = model.to(torch.float32)
        if self.cpu_offload:
            if device.type == "cpu":
                raise ConfigError(
                    "--fsdp-cpu-offload has nothing to offload on a CPU",
                    fix="drop --fsdp-cpu-offload",
                )
            kwargs["offload_policy"] = CPUOffloadPolicy()
        else:
            model = model.to(device)
        kwargs["mesh"] = init_device_mesh(device.type, (accelerator.num_processes,))
        for layer in decoder_layers(model):
            fully_shard(layer, **kwargs)
        # the root (embeddings, final norm, output layer) stays gathered from its forward
        # pass to its backward pass, as FSDP does by default: the loss may use the output
        # layer's weight after the forward pass (a fused linear cross-entropy kernel)
        fully_shard(model, **{**kwargs, "reshard_after_forward": False})
        return model, make_optimizer(model)

    @contextlib.contextmanager
    def no_sync(self, model: Any) -> Iterator[None]:
        """A micro-batch that accumulates its gradients without reducing them."""
        model.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            model.set_requires_gradient_sync(True)

    def clip_grad_norm(self, model: Any, max_norm: float) -> float:
        """Clip the sharded gradients to ``max_norm``; the norm of the whole gradient."""
        import torch
        from torch.distributed.tensor import DTensor

        grads = [p for p in model.parameters() if p.grad is not None]
        norm = torch.nn.utils.clip_grad_norm_(grads, max_norm)
        if isinstance(norm, DTensor):
            norm = norm.full_tensor()
        return float(norm)

    @contextlib.contextmanager
    def saving(self, model: Any) -> Iterator[None]:
        """Every rank gathers the whole state (a collective); inside, ``model.state_dict()``
        returns it on the main process (on the CPU), so the tuner's ``save`` writes the files
        a single process writes."""
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        whole = get_model_state_dict(
            model, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
        )
        for name, dtype in self.dtypes.items():  # the files one process writes
            if name in whole and whole[name].dtype != dtype:
                whole[name] = whole[name].to(dtype)

        def state_dict(*args: Any, **kwargs: Any) -> dict[str, Any]:
            return dict(whole)

        model.state_dict = state_dict
        try:
            yield
        finally:
            del model.state_dict

    @contextlib.contextmanager
    def restoring(self, model: Any) -> Iterator[None]:
        """Inside, ``model.load_state_dict`` takes whole tensors (what a checkpoint holds) and
        loads each rank's shard of them; every rank enters it."""
        from torch.distributed.tensor import DTensor, distribute_tensor

        def load_state_dict(state: dict[str, Any], strict: bool = True, assign: bool = False):
            current = type(model).state_dict(model)
            sharded = {}
            for name, tensor in state.items():
                mine = current.get(name)
                if isinstance(mine, DTensor) and not isinstance(tensor, DTensor):
                    tensor = distribute_tensor(
                        tensor.to(device=mine.device, dtype=mine.dtype),
                        mine.device_mesh,
                        mine.placements,
                        src_data_rank=None,  # every rank holds the whole tensor
                    )
                sharded[name] = tensor
            return type(model).load_state_dict(model, sharded, strict=strict)

        model.load_state_dict = load_state_dict
        try:
            yield
        finally:
            del model.load_state_dict

    def optimizer_state_dict(self, model: Any, optimizer: Any) -> dict[str, Any]:
        """The whole optimizer state, laid out as ``optimizer.state_dict()`` of one process
        (on the main process; a collective)."""
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_optimizer_state_dict,
        )

        whole = get_optimizer_state_dict(
            model, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
        )
        if not whole:
            return {}
        index: dict[str, int] = {}
        groups = []
        for group in whole["param_groups"]:
            for name in group["params"]:
                index[name] = len(index)
            groups.append({**group, "params": [index[n] for n in group["params"]]})
        state = {index[name]: value for name, value in whole["state"].items()}
        return {"state": state, "param_groups": groups}

    def load_optimizer_state_dict(self, model: Any, optimizer: Any, state: dict) -> None:
        """Load what :meth:`optimizer_state_dict` (or one process) saved; every rank."""
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_optimizer_state_dict,
        )

        names = {id(p): n for n, p in model.named_parameters()}
        order = [names[id(p)] for group in optimizer.param_groups for p in group["params"]]
        keyed = {
            "state": {order[int(i)]: value for i, value in state["state"].items()},
            "param_groups": [
                {**group, "params": [order[int(i)] for i in group["params"]]}
                for group in state["param_groups"]
            ],
        }
        set_optimizer_state_dict(
            model, optimizer, keyed, options=StateDictOptions(full_state_dict=True)
        )


def decoder_layers(model: Any) -> list[Any]:
    """The modules FSDP shards one by one: those of the classes the model names in
    ``_no_split_modules`` (its decoder layers), outermost first."""
    classes: set[str] = set()
    for module in model.modules():
        classes.update(getattr(module, "_no_split_modules", None) or ())
    if not classes:
        return []
    found: list[Any] = []
    inside: set[int] = set()
    for module in model.modules():  # parents before their children
        if id(module) in inside or type(module).__name__ not in classes:
            continue
        found.append(module)
        inside.update(id(m) for m in module.modules())
    return found
