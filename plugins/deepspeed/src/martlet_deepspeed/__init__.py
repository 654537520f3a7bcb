"""Martlet's deepspeed parallel strategy (ZeRO stages 1/2/3, offload to the CPU)."""
