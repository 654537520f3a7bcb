"""Martlet tuners: how a model's weights are trained (PEFT methods, full, freeze, ...)."""
