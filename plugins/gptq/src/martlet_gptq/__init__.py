"""GPTQ for Martlet: calibrated 2/3/4/8-bit export through gptqmodel, and GPTQ checkpoints."""
