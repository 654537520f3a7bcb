"""The awq quantizer's own options (``martlet export --quant-method awq --help`` lists them).
No torch or gptqmodel import here: the CLI reads this module to parse and show options."""

from __future__ import annotations

from dataclasses import dataclass

from martlet.config import option, require

#: group sizes AWQ's GEMM layout is written with and gptqmodel's kernels run
GROUP_SIZES = (32, 64, 128)


@dataclass(kw_only=True)
class AwqOptions:
    """AWQ: activation-aware 4-bit weights (gptqmodel)"""

    group_size: int | None = option(
        None,
        help="Weights per quantization group, along each layer's inputs: 32, 64 or 128. "
        "Default: 128, or 64 or 32 where 128 does not divide every quantized layer's input "
        "width (vLLM and SGLang need whole groups).",
        metavar="N",
    )
    # `martlet export`'s own --quant-n-samples: declared here too so that the command hands
    # its value to the quantizer with the others (a field both declare keeps one value)
    quant_n_samples: int = option(128, help="Calibration rows (at most).", metavar="N")

    def __post_init__(self) -> None:
        check_options(self.group_size, self.quant_n_samples)


def check_options(group_size: int | None, n_samples: int = 1) -> None:
    """Raise a ConfigError for an option AWQ cannot use (before anything loads)."""
    require(
        group_size is None or group_size in GROUP_SIZES,
        "group-size",
        group_size,
        "one of " + ", ".join(map(str, GROUP_SIZES)),
        "128",
        why="AWQ checkpoints are written and run with these group sizes",
    )
    require(
        isinstance(n_samples, int) and n_samples >= 1,
        "quant-n-samples",
        n_samples,
        "a positive number of rows",
        "128",
    )
