"""Martlet's built-in accelerators: cpu, cuda, mps and xpu."""
