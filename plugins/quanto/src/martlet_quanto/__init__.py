"""optimum-quanto for Martlet: ``--quant-method quanto --quant-bits 2|4|8`` quantizes a model's
linear layers as it loads (through transformers' ``QuantoConfig``; LoRA trains on top), and
``martlet export --quant-method quanto`` writes quanto's own folder (``quanto_qmap.json`` next
to the safetensors), which ``--model-loader quanto`` (or quanto's
``QuantizedModelForCausalLM.from_pretrained``) loads back."""
