"""Tuners that train the model's own weights: full, freeze, GaLore and LISA.

Their result is a whole model, saved as ``model.safetensors`` (plus ``config.json``) that
``AutoModelForCausalLM`` loads; "merging" it is a no-op.
"""

from __future__ import annotations

import random
from typing import Any

from martlet.errors import ConfigError, MissingDependencyError

from martlet_peft.base import (
    Tuner,
    compile_patterns,
    decoder_layers,
    is_seq_cls,
    load_weights,
    train_head,
)


class FullTuner(Tuner):
    """Every parameter trains."""

    def _prepare(self, model: Any, config: Any) -> Any:
        for param in model.parameters():
            param.requires_grad_(True)
        return model

    def save(self, model: Any, output_dir: str) -> None:
        model.save_pretrained(output_dir, safe_serialization=True)

    def load(self, model: Any, path: str) -> Any:
        return load_weights(model, path)

    def restore(self, model: Any, path: str) -> Any:
        """Load saved weights into an already prepared model (resuming a run)."""
        return load_weights(model, path)

    def merge(self, model: Any) -> Any:
        return model


class FreezeTuner(FullTuner):
    """Only parameters matching ``--trainable-parameters`` regexes, and/or the last
    ``--trainable-layers`` decoder layers, train; with ``--task-type seq_cls`` the (new)
    ``score`` head trains too (alone, it is a linear probe)."""

    def _prepare(self, model: Any, config: Any) -> Any:
        patterns = compile_patterns(list(getattr(config, "trainable_parameters", []) or []))
        last = int(getattr(config, "trainable_layers", 0) or 0)
        seq_cls = is_seq_cls(config)
        if not patterns and last <= 0 and not seq_cls:
            raise ConfigError(
                "--tuner freeze needs to know what to train",
                fix="pass --trainable-parameters REGEX ... and/or --trainable-layers N",
            )
        model.requires_grad_(False)
        if seq_cls:
            train_head(model)
        if last > 0:
            layers = decoder_layers(model)
            if last > len(layers):
                raise ConfigError(
                    f"--trainable-layers {last} is more than the model's {len(layers)} layers"
                )
            for layer in list(layers)[-last:]:
                layer.requires_grad_(True)
        matched = 0
        for name, param in model.named_parameters():
            if any(p.search(name) for p in patterns):
                param.requires_grad_(True)
                matched += 1
        if patterns and not matched:
            raise ConfigError(
                "--trainable-parameters matches no parameter of this model",
                why=f"patterns: {[p.pattern for p in patterns]}",
                fix="names look like model.layers.0.mlp.down_proj.weight",
            )
        return model


class GaloreTuner(FullTuner):
    """GaLore: full-parameter training with gradients of 2-D weights projected to a low rank,
    so optimizer state is small (Zhao et al. 2024; the ``galore-torch`` optimizer)."""

    def create_optimizer(self, model: Any, config: Any) -> Any:
        try:
            from galore_torch import GaLoreAdamW
        except ImportError as exc:
            raise MissingDependencyError(
                "--tuner galore needs the galore-torch package",
                fix="pip install 'martlet-peft[galore]'",
                cause=exc,
            ) from exc
        targets = list(getattr(config, "galore_target_modules", ["attn", "mlp"]))
        galore, regular = [], []
        for name, param in model.named_parameters():
            if not param.requires_grad:
                continue
            is_target = param.dim() == 2 and any(t in name for t in targets)
            (galore if is_target else regular).append(param)
        if not galore:
            raise ConfigError(
                "--galore-target-modules matches no 2-D weight",
                fix="use substrings of module names such as attn mlp",
            )
        groups = [
            {"params": regular},
            {
                "params": galore,
                "rank": int(config.galore_rank),
                "update_proj_gap": int(config.galore_update_proj_gap),
                "scale": float(config.galore_scale),
                "proj_type": "std",
            },
        ]
        return GaLoreAdamW(
            groups,
            lr=float(getattr(config, "learning_rate", 1e-4)),
            weight_decay=float(getattr(config, "weight_decay", 0.0)),
        )


class LisaTuner(FullTuner):
    """LISA (Pan et al. 2024): embeddings and head always train; of the decoder layers, only
    ``--lisa-activated-layers`` sampled at random train, re-sampled every
    ``--lisa-step-interval`` steps."""

    def _prepare(self, model: Any, config: Any) -> Any:
        self.layers = list(decoder_layers(model))
        self.count = int(config.lisa_activated_layers)
        self.interval = int(config.lisa_step_interval)
        if not 0 < self.count <= len(self.layers):
            raise ConfigError(
                f"--lisa-activated-layers must be between 1 and {len(self.layers)}, "
                f"got {self.count}"
            )
        if self.interval <= 0:
            raise ConfigError("--lisa-step-interval must be positive")
        self.rng = random.Random(getattr(config, "seed", 42))
        model.requires_grad_(True)
        self._sample()
        return model

    def _sample(self) -> None:
        active = set(self.rng.sample(range(len(self.layers)), self.count))
        for i, layer in enumerate(self.layers):
            layer.requires_grad_(i in active)
            if i not in active:
                for param in layer.parameters():
                    param.grad = None

    def create_optimizer(self, model: Any, config: Any) -> Any:
        import torch

        # every parameter is in the optimizer; frozen ones have no gradient and are skipped
        return torch.optim.AdamW(
            model.parameters(),
            lr=float(getattr(config, "learning_rate", 1e-4)),
            weight_decay=float(getattr(config, "weight_decay", 0.0)),
        )

    def on_step(self, model: Any, step: int) -> None:
        if step % self.interval == 0:
            self._sample()

    def may_change(self, model: Any) -> set[str]:
        return {name for name, _ in model.named_parameters()}
