"""The infer command."""
