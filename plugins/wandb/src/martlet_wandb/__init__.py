"""The Weights & Biases logger."""
