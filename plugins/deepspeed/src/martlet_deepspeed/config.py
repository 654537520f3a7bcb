"""DeepSpeed configs: the named presets of ``--deepspeed``, a JSON file read and checked, and
the ``"auto"`` values filled from the run's options (no torch or deepspeed import here).

The presets follow ms-swift's ``--deepspeed zero2|zero3|zero2_offload|zero3_offload`` (and
``zero1``); a JSON file is a DeepSpeed config as DeepSpeed documents it, with ``"auto"`` where
the run decides, as Hugging Face's and ms-swift's configs write it.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from martlet.errors import ConfigError

PRESETS = ("zero1", "zero2", "zero3", "zero2_offload", "zero3_offload")

#: what a preset leaves to the run; a JSON file may say "auto" for any of these too
AUTO = "auto"


def preset(name: str) -> dict[str, Any]:
    """The DeepSpeed config of a named preset, ``"auto"`` where the run decides."""
    stage = int(name[4])
    zero: dict[str, Any] = {
        "stage": stage,
        "overlap_comm": False,
        "contiguous_gradients": True,
        "reduce_bucket_size": AUTO,
    }
    if stage == 3:
        zero.update(
            stage3_prefetch_bucket_size=AUTO,
            stage3_param_persistence_threshold=AUTO,
            stage3_max_live_parameters=int(1e9),
            stage3_max_reuse_distance=int(1e9),
        )
    if name.endswith("_offload"):
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
        if stage == 3:
            zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    return {
        "train_micro_batch_size_per_gpu": AUTO,
        "gradient_accumulation_steps": AUTO,
        "train_batch_size": AUTO,
        "gradient_clipping": AUTO,
        "bf16": {"enabled": AUTO},
        "fp16": {"enabled": AUTO},
        "zero_optimization": zero,
        "steps_per_print": 2**31 - 1,
        "wall_clock_breakdown": False,
    }


def is_path(value: str) -> bool:
    """Whether ``--deepspeed`` names a file rather than a preset."""
    return str(value).lower() not in PRESETS


def read(value: str) -> dict[str, Any]:
    """The config ``--deepspeed`` names (a preset or a JSON file), checked: what this strategy
    can run, before anything loads."""
    name = str(value).strip()
    if not is_path(name):
        return preset(name.lower())
    path = Path(name).expanduser()
    fix = f"pass one of {', '.join(PRESETS)}, or the path of a DeepSpeed JSON config"
    if not path.is_file():
        raise ConfigError(
            f"--deepspeed {value}: no such preset or file",
            why=f"{path} does not exist" if path.suffix == ".json" else "it is not a preset",
            fix=fix,
        )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(
            f"--deepspeed {value} cannot be read as a DeepSpeed config",
            why=f"{type(exc).__name__}: {exc}",
            fix="write it as a JSON object (DeepSpeed's config format), or " + fix,
        ) from exc
    if not isinstance(config, dict):
        raise ConfigError(
            f"--deepspeed {value} is not a DeepSpeed config",
            why=f"it holds a JSON {type(config).__name__}, not an object",
            fix="write it as a JSON object (DeepSpeed's config format), or " + fix,
        )
    check(config, str(value))
    return config


def stage(config: dict[str, Any]) -> int:
    zero = config.get("zero_optimization") or {}
    return int(zero.get("stage", 0)) if isinstance(zero, dict) else 0


def offloads(config: dict[str, Any]) -> tuple[bool, bool]:
    """Whether the config offloads the optimizer, and the parameters (to the CPU)."""
    zero = config.get("zero_optimization") or {}

    def device(key: str) -> str:
        part = zero.get(key) or {}
        return str(part.get("device", "none")).lower() if isinstance(part, dict) else "none"

    return device("offload_optimizer") == "cpu", device("offload_param") == "cpu"


def check(config: dict[str, Any], where: str) -> None:
    """Refuse, with what to do instead, what this strategy cannot run."""
    zero = config.get("zero_optimization")
    if zero is not None and not isinstance(zero, dict):
        raise ConfigError(f"--deepspeed {where}: zero_optimization must be an object")
    try:
        n = stage(config)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"--deepspeed {where}: zero_optimization.stage must be 1, 2 or 3",
            why=str(exc),
        ) from exc
    if n not in (1, 2, 3):
        raise ConfigError(
            f"--deepspeed {where}: ZeRO stage {n} is not supported",
            why="this strategy runs ZeRO stages 1, 2 and 3; stage 0 is plain data parallelism",
            fix="set zero_optimization.stage to 1, 2 or 3, or train with --parallel ddp",
        )
    for key in ("offload_optimizer", "offload_param"):
        part = (zero or {}).get(key)
        if part is None:
            continue
        device = str(part.get("device", "none")).lower() if isinstance(part, dict) else "?"
        if device not in ("none", "cpu"):
            raise ConfigError(
                f"--deepspeed {where}: zero_optimization.{key}.device {device!r} is not supported",
                why="this strategy offloads to the CPU's memory only (NVMe needs DeepSpeed's "
                "async I/O extension, which is not built or wired here)",
                fix=f'set {key}.device to "cpu" or "none"',
            )
    if offloads(config)[1] and n != 3:
        raise ConfigError(
            f"--deepspeed {where}: offload_param needs ZeRO stage 3",
            why="only stage 3 partitions the parameters, so only it can move them to the CPU",
            fix="set zero_optimization.stage to 3, or drop offload_param",
        )
    fp16 = config.get("fp16") or {}
    if isinstance(fp16, dict) and fp16.get("enabled") is True:
        raise ConfigError(
            f"--deepspeed {where}: fp16 is not supported",
            why="fp16 needs DeepSpeed's loss scaler, which this strategy does not wire",
            fix='set fp16.enabled to false or "auto" and train in bf16 or float32',
        )
    for key in ("optimizer", "scheduler"):
        section = config.get(key)
        if section is None:
            continue
        params = section.get("params", {}) if isinstance(section, dict) else None
        if not isinstance(params, dict) or any(v != AUTO for v in params.values()):
            raise ConfigError(
                f"--deepspeed {where}: its {key!r} section is not supported",
                why=f"the run's {key} comes from its own options (--optim, --learning-rate, "
                "--adam-beta1/2, --weight-decay, --lr-scheduler-type, --warmup-ratio)",
                fix=f'delete the {key!r} section (one whose params are all "auto" is ignored)',
            )


def filled(
    config: dict[str, Any],
    *,
    micro_batch: int,
    accumulation: int,
    world_size: int,
    max_grad_norm: float,
    bf16: bool,
    hidden_size: int | None,
) -> dict[str, Any]:
    """``config`` with its ``"auto"`` values filled from the run, as Hugging Face's trainer
    fills them; a value the file sets that contradicts the run is an error. The ``optimizer``
    and ``scheduler`` sections (all ``"auto"``, :func:`check`) are dropped: the run builds
    its own."""
    out = copy.deepcopy(config)
    out.pop("optimizer", None)
    out.pop("scheduler", None)
    run = {
        "train_micro_batch_size_per_gpu": (micro_batch, "--per-device-train-batch-size"),
        "gradient_accumulation_steps": (accumulation, "--gradient-accumulation-steps"),
        "train_batch_size": (
            micro_batch * accumulation * world_size,
            "--per-device-train-batch-size × --gradient-accumulation-steps × processes",
        ),
        "gradient_clipping": (float(max_grad_norm or 0.0), "--max-grad-norm"),
    }
    for key, (value, flag) in run.items():
        given = out.get(key, AUTO)
        if given == AUTO:
            out[key] = value
        elif float(given) != float(value):
            raise ConfigError(
                f"the DeepSpeed config's {key} is {given}, the run's is {value}",
                why=f"{flag} decides it for the training loop",
                fix=f'set {key} to "auto" in the JSON file (or to {value})',
            )
    for key, enabled in (("bf16", bf16), ("fp16", False)):
        section = out.setdefault(key, {})
        if isinstance(section, dict) and section.get("enabled", AUTO) == AUTO:
            section["enabled"] = enabled
    zero = out.setdefault("zero_optimization", {})
    sizes = {}
    if hidden_size:
        sizes = {
            "reduce_bucket_size": hidden_size * hidden_size,
            "stage3_prefetch_bucket_size": int(0.9 * hidden_size * hidden_size),
            "stage3_param_persistence_threshold": 10 * hidden_size,
        }
    for key, value in list(zero.items()):
        if value == AUTO:
            if key not in sizes:
                raise ConfigError(
                    f'the DeepSpeed config\'s zero_optimization.{key} is "auto" and nothing '
                    "fills it",
                    why="the model does not say its hidden size"
                    if key in ("reduce_bucket_size", "stage3_prefetch_bucket_size")
                    else f"{key} has no value from the run",
                    fix=f"give zero_optimization.{key} a number",
                )
            zero[key] = sizes[key]
    left = [key for key, value in out.items() if value == AUTO]
    if left:
        raise ConfigError(
            f'the DeepSpeed config sets {", ".join(left)} to "auto", which nothing fills',
            fix="give them values in the JSON file",
        )
    return out
