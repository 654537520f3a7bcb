"""AWQ through gptqmodel.

- Export (``martlet export --quant-method awq``): the model (unquantized, as ``martlet
  export`` loaded it) is written to a temporary folder next to ``--output-dir``, gptqmodel
  loads it from there, searches each decoder block's activation-aware scales on the
  calibration rows (``--dataset``, encoded with the chat template), quantizes the linear layers
  to 4 bits with zero points and packs them with its portable torch kernel — on the CPU as on a
  GPU (its default AWQ kernel for packing is CUDA-only; the layout written is the same) — and
  saves AutoAWQ's GEMM layout: ``config.json`` with a ``quantization_config`` of
  ``quant_method: "awq"``, ``version: "gemm"``, ``zero_point: true``, ``bits: 4`` and the
  ``group_size``, and per layer ``qweight`` (``[in, out / 8]`` int32, eight 4-bit outputs per
  word in AWQ's interleaved order), ``qzeros`` (``[in / group, out / 8]``) and ``scales``
  (``[in / group, out]``, float16) — what transformers, vLLM and SGLang read.
- Checkpoints (``stages`` ``"prequantized"``): a folder whose ``config.json`` says
  ``quant_method: "awq"`` (AutoAWQ's, gptqmodel's, this export) loads through transformers,
  which builds gptqmodel's AWQ layers (on the CPU its torch kernels);
  :meth:`AwqQuantizer.prepare_prequantized` checks that it did.
"""

from __future__ import annotations

import sys
from typing import Any

from martlet.errors import ConfigError
from martlet_gptqmodel import runtime

from martlet_awq.options import GROUP_SIZES, check_options

BITS = (4,)
#: group sizes tried, in order, when --group-size is not given
DEFAULT_GROUPS = tuple(sorted(GROUP_SIZES, reverse=True))
#: outputs packed in one 32-bit word of AWQ's GEMM layout
PACK = 8
#: fewer calibration rows than this and AWQ's scale search overfits them (SmolLM2-135M,
#: 8 chat rows: held-out perplexity fine, chat answers garbled; 64 rows: both fine)
FEW_ROWS = 32


def check_bits(bits: Any) -> int:
    if bits is None:
        return 4
    if bits not in BITS:
        raise ConfigError(
            f"awq cannot quantize to {bits} bits",
            why="AWQ checkpoints (GEMM layout) hold 4 bits per weight",
            fix="pass --quant-bits 4 (or leave it out)",
        )
    return int(bits)


def check_widths(widths: dict[str, tuple[int, int]]) -> None:
    """AWQ packs eight 4-bit outputs per 32-bit word: output widths must be multiples of 8."""
    bad = {n: w for n, w in widths.items() if w[1] % PACK}
    if bad:
        name, (_, width) = next(iter(bad.items()))
        raise ConfigError(
            f"awq cannot pack {name} (output width {width})",
            why=f"AWQ's GEMM layout packs {PACK} outputs per 32-bit word",
            fix="pick another quantizer for this model (gptq, hqq, gguf)",
        )


class AwqQuantizer:
    """The ``awq`` quantizer record's implementation."""

    def export(
        self,
        model: Any,
        tokenizer: Any,
        output_dir: str,
        bits: int = 4,
        *,
        calibration: Any = None,
        group_size: int | None = None,
        quant_n_samples: int = 128,
        **options: Any,
    ) -> None:
        """Quantize ``model`` with AWQ on up to ``quant_n_samples`` calibration rows and write
        the checkpoint to ``output_dir`` (see the module docstring)."""
        import torch

        bits = check_bits(bits)
        check_options(group_size, quant_n_samples)
        runtime.refuse_quantized(model, "awq")
        widths = runtime.linear_widths(model)
        check_widths(widths)
        group = runtime.pick_group_size(group_size, widths, defaults=DEFAULT_GROUPS, fallback=None)
        rows = runtime.calibration_rows(calibration, quant_n_samples, "awq")
        if len(rows) < FEW_ROWS:
            tokens = sum(len(r["input_ids"]) for r in rows)
            print(
                f"martlet: warning: awq calibrates on {len(rows)} rows ({tokens} tokens); its "
                f"scale search can overfit fewer than {FEW_ROWS} (pass --quant-n-samples 128 "
                "and a --dataset with that many rows)",
                file=sys.stderr,
            )
        device = runtime.device_of(model)
        # AutoAWQ's layout: float16 scales (and weights), what every AWQ kernel reads (vLLM's
        # plain AWQ kernel computes in float16 only)
        dtype = torch.float16
        with runtime.gptqmodel_session(), runtime.staged(model, tokenizer, output_dir) as source:
            from gptqmodel import BACKEND, QuantizeConfig

            config = QuantizeConfig(
                bits=bits,
                group_size=group,
                method="awq",
                format="gemm",
                sym=False,  # zero points: AutoAWQ's GEMM layout, what every AWQ runtime reads
                offload_to_disk=False,
                device=device,
            )
            quantized = runtime.load(source, config, dtype, model)
            # the torch kernel packs on any device (the default, AWQ_GEMM, needs CUDA)
            quantized.quantize(
                rows, batch_size=1, backend=BACKEND.AWQ_TORCH, calibration_data_min_length=2
            )
            quantized.save(output_dir)
            runtime.finish(output_dir, source, tokenizer)

    def prepare_prequantized(self, model: Any) -> Any:
        """A checkpoint saying ``quant_method: "awq"``: transformers built it with
        gptqmodel's AWQ layers; check that it did."""
        return runtime.check_loaded(model, "awq", layer="AWQuantLinear")
