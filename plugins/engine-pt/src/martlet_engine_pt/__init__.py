"""The PyTorch inference backend."""
