"""AQLM checkpoints through the ``aqlm`` package (``stages`` ``"prequantized"`` only: the
package runs AQLM layers but has no quantizer, so ``--quant-method aqlm`` at load or export
time is refused by :func:`martlet.quantize.chosen`).

A folder whose ``config.json`` has a ``quantization_config`` of ``quant_method: "aqlm"``
(``in_group_size``, ``out_group_size``, ``num_codebooks``, ``nbits_per_codebook``,
``linear_weights_not_to_quantize``; per quantized layer ``codes``, ``codebooks`` and
``scales``, as AQLM's ``convert_to_hf.py`` writes them) loads through ``martlet.load_model``:

1. the ``aqlm`` model loader (:mod:`martlet_aqlm.loader`), chosen by the folder's
   ``quant_method``, corrects the list of unquantized weights for transformers 5 and loads it
   with the hf loader: transformers' ``AqlmHfQuantizer`` builds aqlm ``QuantizedLinear``
   layers for the other linear layers and loads the codes into them;
2. :meth:`AqlmQuantizer.prepare_prequantized` checks that it did, and makes the layers compute
   with aqlm's dequantization kernel on the CPU (:mod:`martlet_aqlm.layers`; aqlm's CUDA and
   triton kernels on a GPU).

PEFT's LoRA adapts ``QuantizedLinear`` layers (``dispatch_aqlm``): QLoRA trains on them.
"""

from __future__ import annotations

from typing import Any

from martlet.errors import MartletError

from martlet_aqlm.layers import import_aqlm, use_layer_class
from martlet_aqlm.loader import kept_modules, quantization_config


class AqlmQuantizer:
    """The ``aqlm`` quantizer record's implementation (checkpoints only)."""

    def prepare_prequantized(self, model: Any) -> Any:
        """``model``, loaded from a checkpoint that says ``quant_method: "aqlm"``, with its
        AQLM layers checked and set to compute on the CPU (see the module docstring).

        Raises:
            MissingDependencyError: aqlm is not installed.
            MartletError: transformers built no AQLM layer, or built one for a weight the
                checkpoint stores unquantized.
        """
        import_aqlm()
        from aqlm import QuantizedLinear

        layers = [n for n, m in model.named_modules() if isinstance(m, QuantizedLinear)]
        if not layers:
            raise MartletError(
                "the aqlm checkpoint loaded without quantized layers",
                why="its config.json says quant_method 'aqlm', but transformers built no aqlm "
                "QuantizedLinear layer for it",
                fix="check that the folder's weights are the quantized ones (codes, codebooks "
                "and scales per layer)",
            )
        config = getattr(model, "config", None)
        kept = set(kept_modules(quantization_config(config), _tied(config)))
        wrong = [n for n in layers if n in kept]
        if wrong:
            raise MartletError(
                "transformers made AQLM layers of weights the checkpoint stores unquantized: "
                + ", ".join(wrong[:3]),
                why="transformers 5 matches linear_weights_not_to_quantize ('lm_head.weight') "
                "against module names ('lm_head'); these layers hold random codebooks",
                fix="load the folder without naming a model loader, or with --model-loader "
                "aqlm (loader='aqlm'), which corrects the list before loading",
            )
        use_layer_class(model)
        return model


def _tied(config: Any) -> bool:
    return bool(getattr(config, "tie_word_embeddings", False))
