"""EETQ for Martlet: ``--quant-method eetq`` loads a model's linear layers as int8 weights with
fp16 activations (per-channel, no calibration) through transformers' ``EetqConfig``, on CUDA
GPUs only; LoRA trains on top."""
