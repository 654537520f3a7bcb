"""Martlet's training loop and the ``sft`` / ``pt`` commands."""
