"""The bnb quantizer's own options (``martlet sft --quant-method bnb --help`` lists them), named
as transformers' ``BitsAndBytesConfig`` and ms-swift name them. No torch import here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from martlet.config import option


@dataclass(kw_only=True)
class BnbOptions:
    """bitsandbytes: 4-bit (--quant-bits 4) settings; 8-bit has none"""

    bnb_4bit_quant_type: Literal["nf4", "fp4"] = option(
        "nf4",
        help="The 4-bit data type: nf4 (NormalFloat, what QLoRA uses) or fp4.",
        metavar="TYPE",
    )
    bnb_4bit_use_double_quant: bool = option(
        True,
        help="Quantize the 4-bit blocks' scales too (about 0.4 bits less per weight).",
    )
    bnb_4bit_compute_dtype: Literal["auto", "float32", "bfloat16", "float16"] = option(
        "auto",
        help="The dtype 4-bit layers multiply in; auto: the device's native half dtype "
        "(bfloat16 on a CPU with AVX512-BF16 or AMX), float32 where it has none.",
        metavar="DTYPE",
    )
    bnb_4bit_quant_storage: Literal["uint8", "int8", "float16", "bfloat16", "float32"] = option(
        "uint8",
        help="The dtype that holds the packed 4-bit weights (another one only for FSDP, whose "
        "shards must share the other weights' dtype).",
        metavar="DTYPE",
    )
