"""The vLLM inference backend."""
