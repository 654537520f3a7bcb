"""GPTQ through gptqmodel.

- Export (``martlet export --quant-method gptq --quant-bits N``): the model (unquantized, as
  ``martlet export`` loaded it) is written to a temporary folder next to ``--output-dir``,
  gptqmodel loads it from there layer by layer, quantizes every linear layer of the decoder
  blocks with GPTQ on the calibration rows (``--dataset``, encoded with the chat template) on
  the model's device — the CPU too — and saves the result: ``config.json`` with a
  ``quantization_config`` of ``quant_method: "gptq"`` (``bits``, ``group_size``, ``desc_act``,
  ``sym``, ``checkpoint_format: "gptq"``), ``quantize_config.json`` (the same, as auto-gptq
  wrote it), and ``model.safetensors`` with each layer's ``qweight``, ``qzeros``, ``scales``
  and ``g_idx`` in the GPTQ (v1) layout that transformers, vLLM and SGLang read. The output
  head and embeddings stay in half precision.
- Checkpoints (``stages`` ``"prequantized"``): a folder whose ``config.json`` says
  ``quant_method: "gptq"`` — this export, gptqmodel's, auto-gptq's, optimum's — loads through
  transformers, which builds gptqmodel's layers (on the CPU its torch kernels);
  :meth:`GptqQuantizer.prepare_prequantized` checks that it did.
"""

from __future__ import annotations

from typing import Any

from martlet.errors import ConfigError, MartletError, brief
from martlet_gptqmodel import runtime

from martlet_gptq.options import check_options

BITS = (2, 3, 4, 8)
#: group sizes tried, in order, when --group-size is not given
DEFAULT_GROUPS = (128, 64, 32)


def check_bits(bits: Any) -> int:
    if bits not in BITS:
        raise ConfigError(
            f"gptq cannot quantize to {bits} bits",
            why="GPTQ checkpoints hold 2, 3, 4 or 8 bits per weight",
            fix="pass --quant-bits 4 (or 2, 3, 8)",
        )
    return int(bits)


def check_widths(bits: int, widths: dict[str, tuple[int, int]]) -> None:
    """GPTQ packs each column of inputs into 32-bit words: 3-bit layers need input widths
    that are multiples of 32 (and the others of 32 / bits)."""
    step = 32 if bits == 3 else 32 // bits
    bad = {n: w for n, w in widths.items() if w[0] % step}
    if bad:
        name, (width, _) = next(iter(bad.items()))
        raise ConfigError(
            f"gptq cannot pack {bits}-bit weights of {name} (input width {width})",
            why=f"{bits}-bit GPTQ layers need input widths that are multiples of {step}",
            fix="pass --quant-bits 4 or 8" if bits in (2, 3) else "pick another quantizer",
        )


class GptqQuantizer:
    """The ``gptq`` quantizer record's implementation."""

    def export(
        self,
        model: Any,
        tokenizer: Any,
        output_dir: str,
        bits: int,
        *,
        calibration: Any = None,
        group_size: int | None = None,
        desc_act: bool = False,
        sym: bool = True,
        damp_percent: float = 0.05,
        quant_n_samples: int = 128,
        **options: Any,
    ) -> None:
        """Quantize ``model`` with GPTQ on up to ``quant_n_samples`` calibration rows and
        write the checkpoint to ``output_dir`` (see the module docstring)."""
        bits = check_bits(bits)
        check_options(group_size, damp_percent, quant_n_samples)
        runtime.refuse_quantized(model, "gptq")
        widths = runtime.linear_widths(model)
        check_widths(bits, widths)
        group = runtime.pick_group_size(group_size, widths, defaults=DEFAULT_GROUPS, fallback=-1)
        rows = runtime.calibration_rows(calibration, quant_n_samples, "gptq")
        device = runtime.device_of(model)
        dtype = runtime.quant_dtype(model, device)
        with runtime.gptqmodel_session(), runtime.staged(model, tokenizer, output_dir) as source:
            from gptqmodel import QuantizeConfig

            config = QuantizeConfig(
                bits=bits,
                group_size=group,
                desc_act=bool(desc_act),
                # act-group-aware reordering (gptqmodel's default) keeps the plain group
                # layout, but it and act-order exclude each other
                act_group_aware=False if desc_act else None,
                sym=bool(sym),
                damp_percent=float(damp_percent),
                offload_to_disk=False,
                device=device,
            )
            quantized = runtime.load(source, config, dtype, model)
            try:
                quantized.quantize(rows, batch_size=1, calibration_data_min_length=2)
            except Exception as exc:  # noqa: BLE001 - reported with its cause
                if "positive-definite" in str(exc).lower() or "cholesky" in str(exc).lower():
                    raise MartletError(
                        "GPTQ failed on a layer: its Hessian is not positive-definite",
                        why=brief(exc),
                        fix="raise --damp-percent (e.g. 0.1) or give more calibration rows "
                        "(--quant-n-samples, --dataset)",
                        cause=exc,
                    ) from exc
                raise
            quantized.save(output_dir)
            runtime.finish(output_dir, source, tokenizer)

    def prepare_prequantized(self, model: Any) -> Any:
        """A checkpoint saying ``quant_method: "gptq"``: transformers built it with
        gptqmodel's layers; check that it did (a folder whose weights do not match its config
        would load with plain, randomly initialised layers)."""
        return runtime.check_loaded(model, "gptq", needs="optimum and gptqmodel are")
