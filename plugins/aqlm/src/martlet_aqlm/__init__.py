"""AQLM for Martlet: checkpoints quantized elsewhere with AQLM (additive quantization with
learned codebooks) load through ``martlet.load_model`` / ``--model`` and the ``aqlm``
package's layers, for inference and QLoRA, on the CPU or a GPU."""
