"""HQQ (Half-Quadratic Quantization) for Martlet: ``--quant-method hqq`` quantizes a model's
linear layers as it loads (calibration-free, 1 to 8 bits; LoRA trains on top), and ``martlet
export --quant-method hqq`` writes a quantized folder that ``--model-loader hqq`` reloads."""
