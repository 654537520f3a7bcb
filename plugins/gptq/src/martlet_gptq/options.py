"""The gptq quantizer's own options (``martlet export --quant-method gptq --help`` lists them),
named as gptqmodel's and auto-gptq's ``QuantizeConfig`` name them. No torch or gptqmodel
import here: the CLI reads this module to parse and show options."""

from __future__ import annotations

from dataclasses import dataclass

from martlet.config import option, require

#: group sizes gptqmodel packs and its CPU kernels run (-1: one group per output row)
GROUP_SIZES = (-1, 16, 32, 64, 128, 256, 512, 1024)


@dataclass(kw_only=True)
class GptqOptions:
    """GPTQ: calibrated weight quantization (gptqmodel)"""

    group_size: int | None = option(
        None,
        help="Weights per quantization group, along each layer's inputs: 16, 32, 64, 128, "
        "256, 512, 1024, or -1 (one group per output row). Default: 128, or 64 or 32 where "
        "128 does not divide every quantized layer's input width (vLLM and SGLang need whole "
        "groups), else -1.",
        metavar="N",
    )
    desc_act: bool = option(
        False,
        help="Act-order: quantize each layer's columns from the most to the least active "
        "(more accurate, especially at 2-3 bits; the checkpoint then carries a column order "
        "that kernels must follow, slower on some).",
    )
    sym: bool = option(
        True,
        help="Symmetric groups (no zero points), what vLLM's Marlin kernels need; false: "
        "asymmetric, a little more accurate.",
    )
    damp_percent: float = option(
        0.05,
        help="Dampening added to the Hessian's diagonal, as a fraction of its mean (0 to 1, "
        "exclusive); raise it when a layer fails to quantize.",
        metavar="X",
    )
    # `martlet export`'s own --quant-n-samples: declared here too so that the command hands
    # its value to the quantizer with the others (a field both declare keeps one value)
    quant_n_samples: int = option(128, help="Calibration rows (at most).", metavar="N")

    def __post_init__(self) -> None:
        check_options(self.group_size, self.damp_percent, self.quant_n_samples)


def check_options(group_size: int | None, damp_percent: float, n_samples: int = 1) -> None:
    """Raise a ConfigError for an option gptqmodel cannot use (before anything loads)."""
    require(
        group_size is None or group_size in GROUP_SIZES,
        "group-size",
        group_size,
        "one of " + ", ".join(map(str, GROUP_SIZES)),
        "128",
        why="gptqmodel packs and its kernels run only these group sizes",
    )
    require(
        isinstance(damp_percent, (int, float)) and 0 < damp_percent < 1,
        "damp-percent",
        damp_percent,
        "between 0 and 1 (exclusive)",
        "0.05",
        why="it is a fraction of the Hessian's mean diagonal",
    )
    require(
        isinstance(n_samples, int) and n_samples >= 1,
        "quant-n-samples",
        n_samples,
        "a positive number of rows",
        "128",
    )
