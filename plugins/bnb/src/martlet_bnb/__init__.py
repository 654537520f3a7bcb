"""bitsandbytes quantization for Martlet: ``--quant-method bnb --quant-bits 4`` (QLoRA)."""
