"""What quantizing through gptqmodel needs around it, on a CPU as on a GPU: its environment
(worker pools that fit a two-core machine, quieter logs), the model written where gptqmodel
reads it and loaded there, calibration rows in its shape, the device and dtype to quantize in,
the layer widths a group size must divide, and the check that a checkpoint loaded with its
quantized layers. Shared by martlet-gptq and martlet-awq.

Nothing heavy is imported at module level (torch, gptqmodel, logbar: the plugins' entry
modules must stay light, and importing logbar writes a newline to stdout at exit)."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from martlet.errors import ConfigError, MartletError, brief

#: heads that stay unquantized (gptqmodel quantizes the decoder blocks' linear layers only)
HEADS = ("lm_head", "score", "classifier", "v_head")


def cpu_workers() -> int:
    """The CPU worker count gptqmodel's pools get: its own default (half the cores), but at
    least 2, since its model-loader pool asks for 2 and refuses a parent pool smaller than
    that (on a 2-core machine its default is 1, and quantizing fails)."""
    return max(2, ((os.cpu_count() or 1) + 1) // 2)


@contextlib.contextmanager
def gptqmodel_session() -> Iterator[Any]:
    """``gptqmodel``, imported with a worker count that works on any core count
    (``GPTQMODEL_CPU_WORKERS``, unless the user set it) and its INFO logs held back unless
    ``MARTLET_DEBUG`` is set (warnings still show)."""
    os.environ.setdefault("GPTQMODEL_CPU_WORKERS", str(cpu_workers()))
    try:
        import gptqmodel
    except ImportError as exc:  # the record's `requires` is checked first; a broken install
        raise MartletError(
            "gptqmodel cannot be imported",
            why=f"{type(exc).__name__}: {exc}",
            fix="reinstall it with the environment's torch held in place: "
            "pip install -c constraints.txt 'gptqmodel[hf]==7.6.0'",
            cause=exc,
        ) from exc
    _keep_logs_out_of_the_working_directory()
    logger = _gptqmodel_logger()
    level = logger.level if logger is not None else None
    if logger is not None and not os.environ.get("MARTLET_DEBUG"):
        logger.setLevel(logging.WARNING)
    try:
        yield gptqmodel
    finally:
        if logger is not None and level is not None:
            logger.setLevel(level)


def _keep_logs_out_of_the_working_directory() -> None:
    """gptqmodel writes a log file per quantization into ``./logs`` of whatever directory the
    command runs in; they go to a folder of Martlet's cache instead."""
    try:
        from gptqmodel.looper import loop_processor
        from martlet.paths import cache_dir
    except ImportError:  # another gptqmodel layout: its default stays
        return
    if hasattr(loop_processor, "_PROJECT_LOG_DIR"):
        loop_processor._PROJECT_LOG_DIR = cache_dir() / "gptqmodel-logs"


def _gptqmodel_logger() -> logging.Logger | None:
    try:
        from logbar import LogBar

        return LogBar.shared()
    except Exception:  # noqa: BLE001 - only the verbosity depends on it
        return None


def device_of(model: Any) -> str:
    """Where ``model``'s weights are: ``cpu`` or ``cuda:N`` (what gptqmodel takes)."""
    import torch

    device = next(model.parameters()).device
    if device.type == "cuda":
        return f"cuda:{device.index if device.index is not None else torch.cuda.current_device()}"
    if device.type != "cpu":
        raise MartletError(
            f"gptqmodel cannot quantize a model on {device.type}",
            why="this quantizer runs gptqmodel on the CPU or a CUDA GPU",
            fix="export with --device cpu (or a CUDA device)",
        )
    return "cpu"


def quant_dtype(model: Any, device: str) -> Any:
    """The dtype to quantize in and write the unquantized weights with: the model's own half
    dtype, or for a float32 model bfloat16 on a CPU and float16 on a GPU (gptqmodel's kernels
    compute in half precision only)."""
    import torch

    dtype = getattr(model, "dtype", None) or next(model.parameters()).dtype
    if dtype in (torch.float16, torch.bfloat16):
        return dtype
    return torch.float16 if device.startswith("cuda") else torch.bfloat16


def already_quantized(model: Any) -> str | None:
    """The quant method a loaded model already carries (its config's), or None."""
    qc = getattr(getattr(model, "config", None), "quantization_config", None)
    if qc is None:
        return None
    method = qc.get("quant_method") if isinstance(qc, dict) else getattr(qc, "quant_method", None)
    return str(getattr(method, "value", method) or "unknown")


def refuse_quantized(model: Any, name: str) -> None:
    method = already_quantized(model)
    if method is not None:
        raise ConfigError(
            f"the model is already quantized ({method}); {name} quantizes unquantized weights",
            why=f"{name} calibrates on the full-precision weights of each layer",
            fix="export from the unquantized model (its original folder or hub id)",
        )


def linear_widths(model: Any) -> dict[str, tuple[int, int]]:
    """``name -> (in_features, out_features)`` of every ``nn.Linear`` gptqmodel may quantize
    (all but the output head and other heads)."""
    import torch

    out = {}
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear) or module is head:
            continue
        if name.rsplit(".", 1)[-1] in HEADS:
            continue
        out[name] = (module.in_features, module.out_features)
    return out


def pick_group_size(
    group_size: int | None,
    widths: dict[str, tuple[int, int]],
    *,
    defaults: Sequence[int],
    fallback: int | None,
    flag: str = "--group-size",
) -> int:
    """The group size to quantize with: ``group_size`` when every layer's input width is a
    multiple of it, else a ConfigError; ``None``: the first of ``defaults`` that divides every
    width, else ``fallback`` (None: a ConfigError)."""
    inputs = {name: w[0] for name, w in widths.items()}
    if group_size is not None:
        if group_size == -1:
            return -1
        bad = {n: w for n, w in inputs.items() if w % group_size}
        if bad:
            name, width = next(iter(bad.items()))
            fits = [g for g in defaults if all(w % g == 0 for w in inputs.values())]
            raise ConfigError(
                f"{flag} {group_size} does not divide the input width {width} of {name}",
                why="vLLM, SGLang and the GPTQ/AWQ kernels read only whole groups: every "
                "quantized layer's input width must be a multiple of the group size",
                fix=f"pass {flag} {fits[0]}, which divides every width, or leave {flag} out"
                if fits
                else f"leave {flag} out",
            )
        return group_size
    for size in defaults:
        if all(w % size == 0 for w in inputs.values()):
            return size
    if fallback is not None:
        return fallback
    widths_text = ", ".join(sorted({str(w) for w in inputs.values()}))
    raise ConfigError(
        f"no group size divides the model's layer widths ({widths_text})",
        why="the quantized layers' input widths must be multiples of "
        + " or ".join(map(str, defaults)),
        fix="pick another quantizer for this model (hqq, bnb, gguf)",
    )


def calibration_rows(
    calibration: Callable[[int], list[list[int]]] | None, n: int, name: str
) -> list[dict[str, list[int]]]:
    """Up to ``n`` rows from ``martlet export``'s calibration callable, as gptqmodel takes
    them (``input_ids`` and ``attention_mask``)."""
    if calibration is None:
        raise ConfigError(
            f"{name} needs calibration data",
            why=f"{name} measures each layer's inputs on real text to choose its weights",
            fix="run it through `martlet export --quant-method ... --dataset SPEC`, or pass "
            "calibration=<callable returning rows of token ids>",
        )
    rows = [list(map(int, row)) for row in calibration(n) if len(row) >= 2][:n]
    if not rows:
        raise ConfigError(
            f"no calibration rows for {name}",
            why="every calibration row was empty",
            fix="pass --dataset with chat or text rows",
        )
    return [{"input_ids": row, "attention_mask": [1] * len(row)} for row in rows]


@contextlib.contextmanager
def staged(model: Any, tokenizer: Any, output_dir: str) -> Iterator[str]:
    """``model`` and ``tokenizer`` written (safetensors) to a temporary folder next to
    ``output_dir`` (the same disk): gptqmodel reads a model from a folder, layer by layer.
    Removed afterwards."""
    parent = Path(output_dir).expanduser().resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    folder = tempfile.mkdtemp(prefix=".martlet-quant-", dir=parent)
    try:
        model.save_pretrained(folder, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(folder)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def load(source: str, config: Any, dtype: Any, model: Any) -> Any:
    """gptqmodel's model for the staged folder ``source`` (see :func:`staged`), ready to
    quantize with ``config`` (a ``QuantizeConfig``) in ``dtype``; a MartletError naming
    ``model``'s architecture where gptqmodel does not take it. Call it inside
    :func:`gptqmodel_session`."""
    from gptqmodel import GPTQModel

    try:
        return GPTQModel.load(source, config, dtype=dtype)
    except (ValueError, TypeError, NotImplementedError) as exc:
        raise MartletError(
            "gptqmodel cannot quantize this model",
            why=brief(exc),
            fix="check that gptqmodel supports its architecture "
            f"({getattr(model.config, 'model_type', '?')})",
            cause=exc,
        ) from exc


def finish(output_dir: str, source: str, tokenizer: Any) -> None:
    """After gptqmodel's save: the tokenizer and generation settings exactly as the model had
    them (gptqmodel re-saves its own copy of the tokenizer and may rewrite the generation
    config)."""
    out = Path(output_dir)
    if tokenizer is not None:
        tokenizer.save_pretrained(str(out))
    generation = Path(source) / "generation_config.json"
    if generation.is_file():
        shutil.copyfile(generation, out / "generation_config.json")


def check_loaded(
    model: Any, method: str, *, layer: str = "BaseQuantLinear", needs: str = "gptqmodel is"
) -> Any:
    """``model``, when transformers built gptqmodel's quantized layers for it (instances of
    ``gptqmodel.nn_modules.qlinear.<layer>``); a MartletError otherwise (a folder whose weights
    do not match its config loads with plain, randomly initialised layers). ``needs``: what
    the error says must be installed for transformers to build them."""
    from gptqmodel.nn_modules import qlinear

    kind = getattr(qlinear, layer)
    if not any(isinstance(m, kind) for m in model.modules()):
        raise MartletError(
            f"the {method} checkpoint loaded without quantized layers",
            why=f"its config.json says quant_method {method!r}, but transformers built no "
            f"gptqmodel {layer} for it",
            fix="check that the folder's weights are the quantized ones (qweight, qzeros, "
            f"scales) and that {needs} installed",
        )
    return model
