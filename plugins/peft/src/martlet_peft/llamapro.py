"""LLaMA-Pro (Wu et al. 2024): insert identity-initialised copies of decoder blocks and train
only them, so the model learns new knowledge without forgetting the old."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from martlet.errors import ConfigError, MartletError

from martlet_peft.base import Tuner, decoder_layers, is_seq_cls, load_weights, train_head

MARKER = "martlet_llamapro.json"


def expand(model: Any, num_new: int) -> list[int]:
    """Insert ``num_new`` blocks, one after every ``layers / num_new`` original blocks; a new
    block is a copy whose output projections are zero, so it starts as the identity. Returns
    the indexes of the new blocks."""
    import torch

    layers = decoder_layers(model)
    n = len(layers)
    if num_new <= 0 or n % num_new:
        raise ConfigError(
            f"--llamapro-num-new-blocks must divide the model's {n} layers, got {num_new}",
            fix=f"choose one of {[k for k in range(1, n + 1) if n % k == 0]}",
        )
    group = n // num_new
    new_layers, new_ids, types = [], [], []
    layer_types = getattr(model.config, "layer_types", None)
    for i, layer in enumerate(layers):
        new_layers.append(layer)
        if layer_types:
            types.append(layer_types[i])
        if (i + 1) % group == 0:
            block = copy.deepcopy(layer)
            zeroed = 0
            for name, module in block.named_modules():
                if name.endswith(("o_proj", "down_proj", "out_proj", "c_proj", "dense_4h_to_h")):
                    with torch.no_grad():
                        module.weight.zero_()
                        if getattr(module, "bias", None) is not None:
                            module.bias.zero_()
                    zeroed += 1
            if zeroed < 2:
                raise MartletError(
                    "LLaMA-Pro cannot make an identity block for this architecture",
                    why="it needs the attention and MLP output projections (o_proj, down_proj)",
                    fix="choose another tuner",
                )
            new_layers.append(block)
            new_ids.append(len(new_layers) - 1)
            if layer_types:
                types.append(layer_types[i])
    for index, layer in enumerate(new_layers):
        attn = getattr(layer, "self_attn", None)
        if attn is not None and hasattr(attn, "layer_idx"):
            attn.layer_idx = index  # the KV cache is indexed by layer
        if hasattr(layer, "layer_idx"):
            layer.layer_idx = index
    layers_parent = model.get_base_model() if hasattr(model, "get_base_model") else model
    layers_parent.model.layers = torch.nn.ModuleList(new_layers)
    model.config.num_hidden_layers = len(new_layers)
    if layer_types:
        model.config.layer_types = types
    return new_ids


class LlamaProTuner(Tuner):
    """Expand the model with new blocks; only the new blocks train (and, with ``--task-type
    seq_cls``, the new ``score`` head)."""

    def _prepare(self, model: Any, config: Any) -> Any:
        self.num_new = int(config.llamapro_num_new_blocks)
        new_ids = expand(model, self.num_new)
        model.requires_grad_(False)
        layers = decoder_layers(model)
        for i in new_ids:
            layers[i].requires_grad_(True)
        if is_seq_cls(config):
            train_head(model)
        return model

    def save(self, model: Any, output_dir: str) -> None:
        model.save_pretrained(output_dir, safe_serialization=True)
        Path(output_dir, MARKER).write_text(json.dumps({"num_new_blocks": self.num_new}))

    def load(self, model: Any, path: str) -> Any:
        marker = Path(path, MARKER)
        if not marker.is_file():
            raise MartletError(f"{path} is not a LLaMA-Pro result", why=f"{MARKER} is missing")
        expand(model, json.loads(marker.read_text())["num_new_blocks"])
        return load_weights(model, path)

    def restore(self, model: Any, path: str) -> Any:
        """Load saved weights into an already expanded model (resuming a run)."""
        return load_weights(model, path)

    def merge(self, model: Any) -> Any:
        return model  # the expanded model is a plain model already
