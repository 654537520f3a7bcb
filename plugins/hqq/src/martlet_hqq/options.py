"""The hqq quantizer's own options (``--quant-method hqq --hqq-group-size 64``); no torch or
hqq import here: the CLI reads this class to parse and show options."""

from __future__ import annotations

from dataclasses import dataclass

from martlet.config import option, require


@dataclass(kw_only=True)
class HqqOptions:
    """HQQ: group-wise weight quantization"""

    hqq_group_size: int = option(
        64,
        help="Weights per quantization group (a multiple of 8; smaller: more accurate, a few "
        "more bytes of scales).",
        metavar="N",
    )
    hqq_axis: int = option(
        1,
        help="The axis groups run along: 1 (along each output's inputs; the fast backends' "
        "layout) or 0 (more accurate at 2-3 bits).",
        metavar="{0,1}",
    )

    def __post_init__(self) -> None:
        check_options(self.hqq_group_size, self.hqq_axis)
        parent = getattr(super(), "__post_init__", None)
        if parent is not None:
            parent()


def check_options(group_size: int, axis: int) -> None:
    """Raise a ConfigError for a group size or axis hqq cannot use."""
    require(
        isinstance(group_size, int) and group_size >= 8 and group_size % 8 == 0,
        "hqq-group-size",
        group_size,
        "a positive multiple of 8",
        "64",
        why="hqq packs whole groups of weights",
    )
    require(axis in (0, 1), "hqq-axis", axis, "0 or 1", "1")
