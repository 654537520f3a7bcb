"""The bnb quantizer: transformers' ``BitsAndBytesConfig`` for a load, and bitsandbytes' 4-bit
layers kept exact on CPUs with AVX512-BF16.

On such a CPU, bitsandbytes 0.50 (``Linear4bit.forward``) repacks a 4-bit layer's weights, in
place, for its fused bf16 CPU kernel the first time the layer runs in eval mode without
gradients. That path:

- multiplies in bfloat16 whatever ``bnb_4bit_compute_dtype`` says (float32 compute gets bf16
  results);
- rounds the blocks' scales to bfloat16 in place (and re-quantizes the double-quant
  statistics when they are saved), so a model saved afterwards holds other scales than it
  loaded: a save and reload changes it;
- fails on a layer whose input width is not a multiple of the block size (64) or whose output
  width is not a multiple of 32 (``shape '[96, 1]' is invalid for input of size 144``);
- and, once a layer is repacked (an evaluation during training), runs it through a kernel
  without a backward: the adapters of the layers before it silently get zero gradients.

:func:`prepare_layers` turns that off on every 4-bit layer of a model this quantizer loads (the
layer's ``support_avx512bf16_for_cpu`` flag: bitsandbytes has no environment variable for
it), which leaves bitsandbytes' dequantize-then-multiply path: exact in the compute dtype, at
any width, identical after a save and reload. Where the fused kernel does none of the above —
bfloat16 compute, widths it supports, an inference forward (eval mode, no gradient) — the
layer still uses it (for decoding it is several times faster), on a repacked *copy* of its
weights made on first use: the weights and scales the layer saves and trains with are never
touched. That copy costs as much memory again as the layer's 4-bit weights.

Importing bitsandbytes on such a CPU also asks the Hugging Face Hub for an optional kernel for
that fused path: :func:`import_bitsandbytes` imports it without (see :mod:`martlet_bnb.imports`).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from martlet.errors import ConfigError

from martlet_bnb.imports import without_hub_kernels

BITS = (4, 8)
COMPUTE_DTYPES = ("auto", "float32", "bfloat16", "float16")
QUANT_TYPES = ("nf4", "fp4")
STORAGE_DTYPES = ("uint8", "int8", "float16", "bfloat16", "float32")
#: the fused CPU kernel's tiles: output rows in blocks of 32 (and input blocks of blocksize)
_BLOCK_N = 32
#: the module whose LLM.int8 matmul logs, on every call of every 8-bit layer, that it casts
#: non-float16 inputs to float16 (how LLM.int8 quantizes activations: said in the README)
_INT8_LOGGER = "bitsandbytes.autograd._functions"


class _Int8CastNotice(logging.Filter):
    """Drops bitsandbytes' per-call "inputs will be cast ... to float16" notice."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("MatMul8bitLt: inputs will be cast")


def import_bitsandbytes() -> Any:
    """``bitsandbytes``, imported without contacting the Hugging Face Hub (the kernel it would
    fetch serves only the fused CPU path, which runs without it)."""
    if "bitsandbytes" not in sys.modules:
        with without_hub_kernels():
            import bitsandbytes  # noqa: F401
    if not os.environ.get("MARTLET_DEBUG"):
        logger = logging.getLogger(_INT8_LOGGER)
        if not any(isinstance(f, _Int8CastNotice) for f in logger.filters):
            logger.addFilter(_Int8CastNotice())
    return sys.modules["bitsandbytes"]


def fused_cpu_kernel() -> bool:
    """Whether bitsandbytes has its fused bf16 4-bit CPU kernel here (AVX512-BF16 and the
    native library)."""
    bnb = import_bitsandbytes()
    try:
        from bitsandbytes.cextension import ErrorHandlerMockBNBNativeLibrary, lib
    except ImportError:  # another bitsandbytes layout: do without
        return False
    if isinstance(lib, ErrorHandlerMockBNBNativeLibrary):
        return False
    return bool(bnb.functional.has_avx512bf16())


def _fits_fused_kernel(layer: Any) -> bool:
    state = getattr(layer.weight, "quant_state", None)
    shape = tuple(getattr(state, "shape", ()) or ())
    if len(shape) != 2:
        return False
    out_features, in_features = shape
    return out_features % _BLOCK_N == 0 and in_features % state.blocksize == 0


def prepare_layers(model: Any) -> int:
    """Keep every 4-bit layer of ``model`` exact (see the module's docstring): bitsandbytes'
    in-place repacking off (a layer repacked already is unpacked), and where the fused CPU
    kernel exists and fits the layer, a copy-based inference forward instead. Returns how
    many 4-bit layers ``model`` has."""
    bnb = import_bitsandbytes()
    linear4bit = bnb.nn.Linear4bit
    fused = fused_cpu_kernel()
    count = 0
    for module in model.modules():
        if not isinstance(module, linear4bit):
            continue
        count += 1
        module.support_avx512bf16_for_cpu = False
        state = getattr(module.weight, "quant_state", None)
        if getattr(state, "packing_format_for_cpu", False):
            from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse

            module.weight.data, module.weight.quant_state = _convert_weight_packed_for_cpu_inverse(
                module.weight.data, state
            )
        if fused and type(module) is linear4bit and _fits_fused_kernel(module):
            from martlet_bnb.fused import FusedCpuLinear4bit

            module.__class__ = FusedCpuLinear4bit
    return count


def compute_dtype(name: str = "auto", device: str | None = None) -> str:
    """The dtype name 4-bit layers multiply in: ``name``, or for ``auto`` what Martlet's
    automatic precision gives frozen weights on ``device`` (None: the best available): its
    native half dtype (bfloat16 on a CPU with AVX512-BF16 or AMX), else float32."""
    if name not in COMPUTE_DTYPES:
        raise ConfigError(
            f"--bnb-4bit-compute-dtype must be one of {', '.join(COMPUTE_DTYPES)}, not {name!r}"
        )
    if name != "auto":
        return name
    from martlet.errors import MartletError
    from martlet.precision import resolve

    try:
        return resolve(device=device, inference=True).frozen_dtype
    except MartletError:  # no accelerator record (martlet-accel not enabled): nothing is
        return "float32"  # known to be native, and float32 is exact everywhere


class BnbQuantizer:
    """``--quant-method bnb``: 4-bit (nf4, fp4) or 8-bit (LLM.int8) weights as the model
    loads, through transformers; QLoRA with a tuner. A checkpoint saved quantized this way
    (``quant_method: bitsandbytes``) loads through it too."""

    def __init__(self) -> None:
        import_bitsandbytes()  # before transformers or peft do, so without the hub

    def quantize_on_load(
        self,
        bits: int,
        *,
        bnb_4bit_quant_type: str = "nf4",
        bnb_4bit_use_double_quant: bool = True,
        bnb_4bit_compute_dtype: str = "auto",
        bnb_4bit_quant_storage: str = "uint8",
    ) -> Any:
        """transformers' ``BitsAndBytesConfig`` for ``bits`` (4 or 8) and these options."""
        if bits not in BITS:
            raise ConfigError(
                f"bnb cannot quantize to {bits} bits",
                why="bitsandbytes stores weights in 4 bits (nf4, fp4) or 8 bits (LLM.int8)",
                fix="pass --quant-bits 4 (or 8)",
            )
        from transformers import BitsAndBytesConfig

        if bits == 8:
            return BitsAndBytesConfig(load_in_8bit=True)
        if bnb_4bit_quant_type not in QUANT_TYPES:
            raise ConfigError(
                f"--bnb-4bit-quant-type must be nf4 or fp4, not {bnb_4bit_quant_type!r}"
            )
        if bnb_4bit_quant_storage not in STORAGE_DTYPES:
            raise ConfigError(
                f"--bnb-4bit-quant-storage must be one of {', '.join(STORAGE_DTYPES)}, "
                f"not {bnb_4bit_quant_storage!r}"
            )
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=bnb_4bit_quant_type,
            bnb_4bit_use_double_quant=bool(bnb_4bit_use_double_quant),
            bnb_4bit_compute_dtype=compute_dtype(bnb_4bit_compute_dtype),
            bnb_4bit_quant_storage=bnb_4bit_quant_storage,
        )

    def quantize_loaded(self, model: Any, bits: int, **options: Any) -> Any:
        """After the load: keep the 4-bit layers exact (:func:`prepare_layers`)."""
        prepare_layers(model)
        return model

    def prepare_prequantized(self, model: Any) -> Any:
        """A checkpoint saved with a bitsandbytes ``quantization_config``: transformers loaded
        it quantized; keep its 4-bit layers exact (:func:`prepare_layers`)."""
        prepare_layers(model)
        return model
