"""optimum-quanto: weights of the linear layers stored as int2, int4 (group-wise, 128 per group,
with a scale and a shift) or int8 (a scale per output), dequantized by quanto's kernels as they
compute (on a CPU, int2 and int4 use quanto's C++ extension, compiled on first use).

- Load time (``--quant-method quanto``): :meth:`QuantoQuantizer.quantize_on_load` returns
  transformers' ``QuantoConfig``; transformers replaces every ``nn.Linear`` but the output
  head by quanto's ``QLinear`` (an ``nn.Linear``, so LoRA's ``all-linear`` finds it) as the
  weights load, in the run's dtype.
- Export (``martlet export --quant-method quanto``): the same quantization, done by quanto on
  the loaded model, and saved in quanto's own layout (transformers refuses to save a model it
  quantized with quanto): ``config.json`` (with ``quantization_config`` =
  ``{"quant_method": "quanto", "weights": "int4", ...}``), ``model.safetensors`` (each
  quantized weight as its parts, ``<layer>.weight._data``, ``._scale`` (and ``._shift``)),
  ``quanto_qmap.json`` (which layer holds which type) and the tokenizer. quanto's
  ``QuantizedModelForCausalLM.from_pretrained`` loads it, and so does :class:`QuantoLoader`
  (``--model-loader quanto``), which also checks every weight is there. Plain transformers
  does not: it loads such a folder as an unquantized model with its linear layers missing.

Nothing heavy is imported at module level: the model loader is asked ``can_load`` on every
model load.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from martlet.errors import ConfigError, MartletError

BITS = (2, 4, 8)
QMAP = "quanto_qmap.json"
WEIGHTS = "model.safetensors"
FORMAT = "quanto-safetensors/1"
#: last name parts of heads that stay unquantized besides the model's output embeddings
HEADS = ("lm_head", "score", "classifier", "v_head")


def check_bits(bits: Any) -> int:
    if bits not in BITS:
        raise ConfigError(
            f"quanto cannot quantize to {bits} bits",
            why="quanto stores weights as int2, int4 or int8 (its float8 needs a GPU's kernels)",
            fix="pass --quant-bits 4 (or 2, 8)",
        )
    return int(bits)


class QuantoQuantizer:
    """The ``quanto`` quantizer record's implementation."""

    def quantize_on_load(self, bits: int, **options: Any) -> Any:
        _no_options(options)
        from transformers import QuantoConfig

        return QuantoConfig(weights=f"int{check_bits(bits)}")

    def export(
        self, model: Any, tokenizer: Any, output_dir: str, bits: int, **options: Any
    ) -> None:
        _no_options(options)
        quantize_model(model, bits)
        save_quantized(model, tokenizer, output_dir)


def _no_options(options: dict[str, Any]) -> None:
    unknown = sorted(k for k in options if k != "calibration")
    if unknown:
        raise ConfigError(
            f"the quanto quantizer takes no option {', '.join(unknown)}",
            why="it quantizes weights only, without calibration",
        )


def _qtype(bits: int) -> Any:
    from optimum.quanto import qint2, qint4, qint8

    return {2: qint2, 4: qint4, 8: qint8}[check_bits(bits)]


def _heads(model: Any) -> list[str]:
    """The names of the modules that stay unquantized: the output head(s)."""
    get = getattr(model, "get_output_embeddings", None)
    out = get() if get is not None else None
    return [
        name
        for name, module in model.named_modules()
        if name and (module is out or name.rsplit(".", 1)[-1] in HEADS)
    ]


def quantize_model(model: Any, bits: int) -> Any:
    """Quantize, in place, every linear layer of ``model`` but its output head to ``bits``
    with quanto, and freeze the weights in their quantized form (as the load-time path does).
    Returns ``model``, its ``config.quantization_config`` saying how."""
    from optimum.quanto import freeze, quantize

    qtype = _qtype(bits)
    exclude = _heads(model)
    quantize(model, weights=qtype, exclude=exclude or None)
    freeze(model)
    if getattr(model, "config", None) is not None:
        model.config.quantization_config = {
            "quant_method": "quanto",
            "weights": f"int{bits}",
            "activations": None,
            "modules_to_not_convert": exclude,
            "martlet_format": FORMAT,
        }
    return model


def save_quantized(model: Any, tokenizer: Any, output_dir: str | Path) -> Path:
    """Write a model :func:`quantize_model` quantized, and its tokenizer, to ``output_dir`` in
    quanto's layout (this module's docstring)."""
    from optimum.quanto import quantization_map

    qmap = quantization_map(model)
    if not qmap:
        raise MartletError(
            "the model to save has no quanto layer",
            fix="quantize it first (martlet_quanto.quantizer.quantize_model)",
        )
    if getattr(model, "hf_quantizer", None) is not None:
        raise MartletError(
            "transformers quantized this model as it loaded and will not save it",
            fix="load it unquantized and export it: martlet export --quant-method quanto",
        )
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    (out / QMAP).write_text(json.dumps(qmap, indent=2) + "\n", encoding="utf-8")
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    return out


def is_quanto_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder optimum-quanto saved (a ``quanto_qmap.json`` beside a
    ``config.json``)."""
    folder = Path(path).expanduser()
    return (folder / QMAP).is_file() and (folder / "config.json").is_file()


def _state(folder: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    index = folder / (WEIGHTS + ".index.json")
    files = (
        sorted(set(json.loads(index.read_text())["weight_map"].values()))
        if index.is_file()
        else [WEIGHTS]
    )
    state: dict[str, Any] = {}
    for name in files:
        if not (folder / name).is_file():
            raise MartletError(
                f"{folder} has no {name}",
                fix="export the model again with `martlet export --quant-method quanto`",
            )
        state.update(load_file(str(folder / name)))
    return state


def load_quantized(
    path: str | Path,
    *,
    torch_dtype: str | None = None,
    device: str | None = None,
    attn_impl: str | None = None,
    trust_remote_code: bool = False,
) -> Any:
    """The model quanto saved in ``path``, its quantized layers rebuilt from their saved parts
    (nothing is quantized again).

    ``torch_dtype`` (None or ``auto``: the dtype it was saved in) is the dtype of the weights
    that are not quantized and of the quantized weights' scales (so of the computation);
    ``device`` where it goes (the CPU by default).

    Raises:
        MartletError: the folder lacks a file or a weight its model needs.
    """
    import torch
    from accelerate import init_empty_weights
    from optimum.quanto import requantize
    from transformers import AutoConfig, AutoModelForCausalLM

    folder = Path(path).expanduser()
    qmap = json.loads((folder / QMAP).read_text(encoding="utf-8"))
    config = AutoConfig.from_pretrained(
        folder, trust_remote_code=trust_remote_code, local_files_only=True
    )
    qc = getattr(config, "quantization_config", None)
    if qc is not None:
        del config.quantization_config  # a plain model; requantize makes its layers
    state = _state(folder)
    stored = next((v.dtype for v in state.values() if v.is_floating_point()), torch.float32)
    dtype = stored if torch_dtype in (None, "auto") else getattr(torch, str(torch_dtype))
    if dtype != stored:  # the scales set a quantized weight's dtype: cast before it is built
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code, "dtype": dtype}
    if attn_impl:
        kwargs["attn_implementation"] = attn_impl
    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(config, **kwargs)
    requantize(model, state_dict=state, quantization_map=qmap, device=torch.device(device or "cpu"))
    if getattr(config, "tie_word_embeddings", False):
        model.tie_weights()
    tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
    missing = sorted(set(model.state_dict()) - set(state) - tied)
    if missing:
        raise MartletError(
            f"the weights in {folder} do not fit its model",
            why=f"{len(missing)} missing, e.g. {', '.join(missing[:3])}",
            fix="export the model again with `martlet export --quant-method quanto`",
        )
    if qc is not None:
        model.config.quantization_config = qc
    gen = folder / "generation_config.json"
    if gen.is_file():
        from transformers import GenerationConfig

        model.generation_config = GenerationConfig.from_pretrained(folder)
    model.name_or_path = str(folder)
    return model.eval()


class QuantoLoader:
    """Loads what ``martlet export --quant-method quanto`` (or quanto) saved
    (``--model-loader quanto``)."""

    def can_load(self, source: str) -> bool:
        return is_quanto_folder(source)

    def load(self, source: str, **options: Any) -> tuple[Any, Any]:
        from martlet.quantize import folder_load_errors, folder_load_options

        folder = self._folder(source)
        kwargs = folder_load_options("quanto", source, options)
        tokenizer = self.load_tokenizer(source, **options)
        with folder_load_errors("quanto", folder):
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
        if not is_quanto_folder(folder):
            raise MartletError(
                f"{source!r} is not a folder quanto saved",
                why=f"it has no {QMAP} beside a config.json",
                fix="give a folder written by `martlet export --quant-method quanto`, or load "
                "an ordinary model with --quant-method quanto",
            )
        return folder
