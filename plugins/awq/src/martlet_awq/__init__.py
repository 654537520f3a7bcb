"""AWQ for Martlet: 4-bit activation-aware export through gptqmodel, and AWQ checkpoints."""
