"""The gptqmodel runtime Martlet's GPTQ and AWQ quantizers share (a library, no plugin)."""
