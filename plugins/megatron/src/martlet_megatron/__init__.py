"""Martlet's ``megatron`` parallel strategy (Megatron-Core tensor parallelism on CUDA GPUs) and
the conversion of Llama-family weights between the Hugging Face and Megatron-Core layouts."""
