"""HQQ through the ``hqq`` library itself (transformers 5's ``HqqConfig`` path raises "not
available yet"): a model's linear layers become :class:`hqq.core.quantize.HQQLinear` layers.

- Load time (``--quant-method hqq``): :meth:`HqqQuantizer.quantize_on_load` returns None, the
  model loads unquantized in the run's dtype (``auto``: what :mod:`martlet.precision` chose:
  bfloat16 on a CPU or GPU that computes it natively, else float32) and
  :meth:`HqqQuantizer.quantize_loaded` replaces every ``nn.Linear`` but the output head by an
  ``HQQLinear`` that computes in that same dtype, through hqq's plain PyTorch backend
  (dequantize, then matmul; nothing compiled, so it runs on any CPU; the backward pass
  recomputes the weight instead of keeping it). PEFT's LoRA wraps ``HQQLinear`` layers (QLoRA).
- Export (``martlet export --quant-method hqq``): the same layers, written as a Hugging Face
  folder (:func:`save_quantized`, below) that :class:`HqqLoader` (``--model-loader hqq``)
  loads back to the same outputs (:func:`load_quantized`).

The folder: ``config.json`` holds the model's config with ``quantization_config`` =
``{"quant_method": "hqq", "quant_config": <hqq's BaseQuantizeConfig>, "skip_modules": [...],
"martlet_format": "hqq-safetensors/1"}`` (the shape transformers' ``HqqConfig.to_dict`` has);
``hqq_model.safetensors`` holds each ``HQQLinear``'s own safetensors-ready state (hqq's
``state_dict()``: ``<layer>.W_q`` packed weights, ``.scale``, ``.zero`` and the meta data as
small tensors) next to the other weights (a tied output head is left out: it is the input
embeddings); ``generation_config.json`` and the tokenizer's files complete it. The weights
file is not called ``model.safetensors`` on purpose: transformers 5 would load that as an
unquantized model, its linear layers randomly initialised, where now it refuses the folder.

Nothing heavy is imported at module level: the model loader is asked ``can_load`` on every
model load.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from martlet.errors import ConfigError, MartletError

from martlet_hqq.options import check_options

BITS = (1, 2, 3, 4, 8)
FORMAT = "hqq-safetensors/1"
WEIGHTS = "hqq_model.safetensors"
#: last name parts of heads that stay unquantized besides the model's output embeddings
HEADS = ("lm_head", "score", "classifier", "v_head")


def check_bits(bits: Any) -> int:
    if bits not in BITS:
        raise ConfigError(
            f"hqq cannot quantize to {bits} bits",
            why="hqq packs 1, 2, 3, 4 or 8 bits per weight",
            fix="pass --quant-bits 4 (or 1, 2, 3, 8)",
        )
    return int(bits)


class HqqQuantizer:
    """The ``hqq`` quantizer record's implementation."""

    def quantize_on_load(self, bits: int, **options: Any) -> None:
        """None: the model loads unquantized and :meth:`quantize_loaded` quantizes it."""
        check_bits(bits)
        _options(options)
        return None

    def quantize_loaded(self, model: Any, bits: int, **options: Any) -> Any:
        group_size, axis = _options(options)
        return quantize_model(model, bits, group_size=group_size, axis=axis)

    def export(
        self, model: Any, tokenizer: Any, output_dir: str, bits: int, **options: Any
    ) -> None:
        group_size, axis = _options(options)
        quantize_model(model, bits, group_size=group_size, axis=axis)
        save_quantized(model, tokenizer, output_dir)


def _options(options: dict[str, Any]) -> tuple[int, int]:
    group_size = int(options.get("hqq_group_size", 64))
    axis = int(options.get("hqq_axis", 1))
    check_options(group_size, axis)
    return group_size, axis


# --------------------------------------------------------------------------- the layers


@functools.cache
def layer_class() -> type:
    """hqq's ``HQQLinear`` that also follows ``model.to(device)``: hqq's own keeps its scales,
    zeros and bias where they were (its ``.to`` is a no-op), so a quantized model moved by
    ``accelerate`` (or ``.cuda()``) would compute with tensors on two devices. Only the device
    moves: like ``HQQLinear``, it keeps computing in its ``compute_dtype``."""
    import torch
    from hqq.core.quantize import HQQBackend, HQQLinear

    # dequantize then matmul in PyTorch, recomputing the weight in the backward pass instead of
    # keeping it (hqq's default; its compiled and CUDA backends need a compiler or a GPU)
    HQQLinear.set_backend(HQQBackend.PYTORCH)

    class HqqLinear(HQQLinear):
        def _apply(self, fn: Any, recurse: bool = True) -> Any:
            W_q = getattr(self, "W_q", None)
            if not isinstance(W_q, torch.Tensor):
                return super()._apply(fn, recurse)
            target = fn(torch.empty(0, device=W_q.device)).device
            if target != W_q.device:
                self.W_q = torch.nn.Parameter(W_q.data.to(target), requires_grad=False)
                for key, value in list(self.meta.items()):
                    if isinstance(value, torch.Tensor):
                        self.meta[key] = value.to(target)
                if isinstance(self.bias, torch.Tensor):
                    self.bias = self.bias.to(target)
                self.device = target
            return self

    HqqLinear.__name__ = HqqLinear.__qualname__ = "HQQLinear"
    return HqqLinear


def quant_config(bits: int, group_size: int, axis: int) -> dict[str, Any]:
    """hqq's per-layer configuration (``BaseQuantizeConfig``)."""
    from hqq.core.quantize import BaseQuantizeConfig

    return BaseQuantizeConfig(nbits=check_bits(bits), group_size=group_size, axis=axis)


def _heads(model: Any) -> list[Any]:
    heads = []
    get = getattr(model, "get_output_embeddings", None)
    if get is not None:
        out = get()
        if out is not None:
            heads.append(out)
    return heads


def quantize_model(model: Any, bits: int, *, group_size: int = 64, axis: int = 1) -> Any:
    """Replace, in place, every ``nn.Linear`` of ``model`` but its output head (and any layer
    whose weights do not split into whole groups) by an ``HQQLinear`` of ``bits`` bits that
    computes in the layer's own dtype on its own device. Returns ``model``, with
    ``config.quantization_config`` saying how (what :func:`save_quantized` writes).

    Raises:
        ConfigError: ``bits``, ``group_size`` or ``axis`` hqq cannot use, or a model with no
            linear layer to quantize.
    """
    import torch

    check_bits(bits)
    check_options(group_size, axis)
    config = quant_config(bits, group_size, axis)
    cls = layer_class()
    heads = _heads(model)
    skipped: list[str] = []
    count = 0
    for name, module in list(model.named_modules()):
        if not isinstance(module, torch.nn.Linear) or isinstance(module, cls):
            continue
        last = name.rsplit(".", 1)[-1]
        if any(module is h for h in heads) or last in HEADS:
            skipped.append(last)
            continue
        if module.weight.numel() % group_size or module.weight.device.type == "meta":
            skipped.append(name)
            continue
        dtype = module.weight.dtype if module.weight.is_floating_point() else torch.float32
        layer = cls(module, config, compute_dtype=dtype, device=module.weight.device)
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, layer)
        count += 1
    if not count:
        raise ConfigError(
            f"hqq found no linear layer to quantize in {type(model).__name__}",
            why="hqq replaces torch.nn.Linear layers (not the output head), and this model has "
            "none whose weights split into groups of --hqq-group-size "
            f"{group_size}"
            + (f" (passed over: {', '.join(sorted(set(skipped)))})" if skipped else ""),
            fix="pass a smaller --hqq-group-size, or choose another quantizer",
        )
    model.hqq_quantized = True  # what PEFT and hqq look for
    if getattr(model, "config", None) is not None:
        model.config.quantization_config = {
            "quant_method": "hqq",
            "quant_config": config,
            "skip_modules": sorted({s.rsplit(".", 1)[-1] for s in skipped}) or ["lm_head"],
            "martlet_format": FORMAT,
        }
    return model


# --------------------------------------------------------------------------- the folder


def save_quantized(model: Any, tokenizer: Any, output_dir: str | Path) -> Path:
    """Write a model :func:`quantize_model` quantized, and its tokenizer, to ``output_dir``
    (the layout in this module's docstring); :func:`load_quantized` reads it back."""
    import torch
    from safetensors.torch import save_file

    out = Path(output_dir)
    qc = getattr(getattr(model, "config", None), "quantization_config", None)
    if not (isinstance(qc, dict) and qc.get("quant_method") == "hqq"):
        raise MartletError(
            "the model to save is not quantized with hqq",
            fix="quantize it first (martlet_hqq.quantizer.quantize_model)",
        )
    out.mkdir(parents=True, exist_ok=True)
    state: dict[str, Any] = {}
    seen: set[tuple[int, int]] = set()
    for name, tensor in model.state_dict().items():
        if not isinstance(tensor, torch.Tensor):
            continue
        where = (tensor.untyped_storage().data_ptr(), tensor.storage_offset())
        if tensor.numel() and where in seen:  # a tied weight: saved once, tied again on load
            continue
        seen.add(where)
        state[name] = tensor.detach().contiguous()
    save_file(state, str(out / WEIGHTS), metadata={"format": "pt", "martlet_format": FORMAT})
    model.config.save_pretrained(out)
    generation = getattr(model, "generation_config", None)
    if generation is not None:
        generation.save_pretrained(out)
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    return out


def is_hqq_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder whose ``config.json`` says hqq quantized it."""
    config = Path(path).expanduser() / "config.json"
    if not config.is_file():
        return False
    try:
        qc = json.loads(config.read_text(encoding="utf-8")).get("quantization_config")
    except (OSError, ValueError):
        return False
    return isinstance(qc, dict) and str(qc.get("quant_method", "")).lower() == "hqq"


def _state(folder: Path, device: str) -> dict[str, Any]:
    from safetensors.torch import load_file

    file = folder / WEIGHTS
    if not file.is_file():
        raise MartletError(
            f"{folder} has no {WEIGHTS}",
            why="an hqq folder keeps its weights, quantized and not, in that one file",
            fix="export the model again with `martlet export --quant-method hqq`",
        )
    return load_file(str(file), device=device)


def load_quantized(
    path: str | Path,
    *,
    torch_dtype: str | None = None,
    device: str | None = None,
    attn_impl: str | None = None,
    trust_remote_code: bool = False,
) -> Any:
    """The model :func:`save_quantized` wrote to ``path``, its ``HQQLinear`` layers rebuilt
    from their saved state (nothing is quantized again) and the other weights loaded as saved.

    ``torch_dtype`` (None or ``auto``: the dtype the folder was saved in) is the dtype of the
    unquantized weights and the layers' compute dtype; ``device`` where it all goes (CPU).
    """
    import torch
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    folder = Path(path).expanduser()
    device = str(device or "cpu")
    config = AutoConfig.from_pretrained(
        folder, trust_remote_code=trust_remote_code, local_files_only=True
    )
    qc = getattr(config, "quantization_config", None)
    if not (isinstance(qc, dict) and str(qc.get("quant_method", "")).lower() == "hqq"):
        raise MartletError(f"{folder} is not an hqq-quantized model folder")
    state = _state(folder, device)
    quantized = sorted(k[: -len(".W_q")] for k in state if k.endswith(".W_q"))
    stored = next(
        (v.dtype for k, v in state.items() if v.is_floating_point() and not _in(k, quantized)),
        torch.float32,
    )
    dtype = stored if torch_dtype in (None, "auto") else getattr(torch, str(torch_dtype))
    del config.quantization_config  # build a plain model; the layers are replaced below
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if attn_impl:
        kwargs["attn_implementation"] = attn_impl
    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(config, **kwargs)
    cls = layer_class()
    for name in quantized:
        parent_name, _, child = name.rpartition(".")
        layer = cls(None, None, compute_dtype=dtype, device=device, initialize=False)
        setattr(model.get_submodule(parent_name) if parent_name else model, child, layer)
    result = model.load_state_dict(state, strict=False, assign=True)
    if getattr(config, "tie_word_embeddings", False):
        model.tie_weights()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, cls):
                continue
            for pname, param in list(module.named_parameters(recurse=False)):
                if param.is_floating_point() and param.dtype != dtype:
                    module._parameters[pname] = torch.nn.Parameter(
                        param.data.to(dtype), requires_grad=param.requires_grad
                    )
    missing = [n for n, p in model.named_parameters() if p.device.type == "meta"]
    if missing or result.unexpected_keys:
        raise MartletError(
            f"the weights in {folder} do not fit its model",
            why=f"missing {missing[:3]}" if missing else f"unexpected {result.unexpected_keys[:3]}",
            fix="export the model again with `martlet export --quant-method hqq`",
        )
    config.quantization_config = qc
    model.config.quantization_config = qc
    model.hqq_quantized = True
    gen = folder / "generation_config.json"
    if gen.is_file():
        from transformers import GenerationConfig

        model.generation_config = GenerationConfig.from_pretrained(folder)
    model.name_or_path = str(folder)
    return model.eval()


def _in(key: str, prefixes: list[str]) -> bool:
    return any(key.startswith(p + ".") for p in prefixes)


# --------------------------------------------------------------------------- the loader


class HqqLoader:
    """Loads what ``martlet export --quant-method hqq`` wrote (``--model-loader hqq``)."""

    def can_load(self, source: str) -> bool:
        return is_hqq_folder(source)

    def load(self, source: str, **options: Any) -> tuple[Any, Any]:
        from martlet.quantize import folder_load_errors, folder_load_options

        folder = self._folder(source)
        kwargs = folder_load_options("hqq", source, options)
        tokenizer = self.load_tokenizer(source, **options)
        with folder_load_errors("hqq", folder):
            model = load_quantized(folder, **kwargs)
        return model, tokenizer

    def load_tokenizer(self, source: str, **options: Any) -> Any:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(
            self._folder(source),
            trust_remote_code=bool(options.get("trust_remote_code", False)),
            local_files_only=True,
        )

    @staticmethod
    def _folder(source: str) -> Path:
        folder = Path(source).expanduser()
        if not is_hqq_folder(folder):
            raise MartletError(
                f"{source!r} is not a folder hqq quantized",
                why="its config.json has no quantization_config with quant_method hqq",
                fix="give a folder written by `martlet export --quant-method hqq`, or load "
                "an ordinary model with --quant-method hqq",
            )
        return folder
