"""Export a Llama-family model to one GGUF file (``martlet export --quant-method gguf``)."""
