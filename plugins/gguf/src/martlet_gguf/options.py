"""The gguf quantizer's own option (``--gguf-type``) and how it relates to ``--quant-bits``;
no gguf, numpy or torch import here (``--help`` reads this module)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from martlet.config import option
from martlet.errors import ConfigError

GgufType = Literal["f32", "f16", "bf16", "q8_0", "q5_0", "q5_1", "q4_0", "q4_1"]

#: the width each GGUF type counts as for ``--quant-bits`` (the record's ``bits``)
TYPE_BITS: dict[str, int] = {
    "f32": 32,
    "f16": 16,
    "bf16": 16,
    "q8_0": 8,
    "q5_0": 5,
    "q5_1": 5,
    "q4_0": 4,
    "q4_1": 4,
}

#: the type ``--quant-bits N`` alone picks
BITS_TYPE: dict[int, str] = {32: "f32", 16: "f16", 8: "q8_0", 5: "q5_0", 4: "q4_0"}


@dataclass(kw_only=True)
class GgufOptions:
    """GGUF: one llama.cpp file"""

    gguf_type: GgufType | None = option(
        None,
        help="The GGUF type of the 2-D weights: f32, f16, bf16, q8_0, q5_0, q5_1, q4_0 or q4_1 "
        "(default: from --quant-bits: 32 f32, 16 f16, 8 q8_0, 5 q5_0, 4 q4_0). Norms stay f32.",
        metavar="TYPE",
    )

    def __post_init__(self) -> None:
        """Check ``--gguf-type`` against ``--quant-bits`` before anything loads; when the
        command has ``--quant-bits`` and it was not given, take it from the type (so that
        ``--gguf-type q4_1`` alone is enough)."""
        if self.gguf_type is None:
            return
        kind = check_type(self.gguf_type)
        bits = getattr(self, "quant_bits", None)
        if bits is None and hasattr(self, "quant_bits"):
            self.quant_bits = TYPE_BITS[kind]
        self.gguf_type = kind
        resolve_type(bits, kind)


def check_type(gguf_type: str) -> str:
    """``gguf_type`` in lower case, or a ConfigError naming the types there are."""
    kind = str(gguf_type).strip().lower()
    if kind not in TYPE_BITS:
        raise ConfigError(
            f"--gguf-type must be one of {', '.join(get_args(GgufType))}, not {gguf_type!r}",
            why="these are the GGUF types written here (the k-quants need llama.cpp's "
            "llama-quantize)",
            fix="e.g. --gguf-type q8_0",
        )
    return kind


def resolve_type(bits: int | None, gguf_type: str | None) -> str:
    """The GGUF type to write for ``--quant-bits bits`` and ``--gguf-type gguf_type``.

    Either one is enough; when both are given they must agree (q8_0 is 8 bits, q4_1 is 4).

    Raises:
        ConfigError: neither is given, the type is unknown, the width has no type, or the
            two disagree.
    """
    if gguf_type is not None:
        kind = check_type(gguf_type)
        if bits is not None and bits != TYPE_BITS[kind]:
            same = [t for t, b in TYPE_BITS.items() if b == bits]
            raise ConfigError(
                f"--gguf-type {kind} is {TYPE_BITS[kind]}-bit, but --quant-bits is {bits}",
                why="--quant-bits and --gguf-type both choose the width; they must agree",
                fix="drop --quant-bits (--gguf-type decides)"
                + (f", or pass --gguf-type {' or '.join(same)}" if same else ""),
            )
        return kind
    if bits is None:
        raise ConfigError(
            "--quant-method gguf needs --gguf-type or --quant-bits",
            fix="e.g. --gguf-type q8_0 (or --quant-bits 8)",
        )
    if bits not in BITS_TYPE:
        widths = ", ".join(map(str, BITS_TYPE))
        raise ConfigError(
            f"gguf cannot quantize to {bits} bits",
            why=f"--quant-bits picks one of: {widths}",
            fix="pass --gguf-type TYPE instead, e.g. --gguf-type q8_0",
        )
    return BITS_TYPE[bits]
