"""What every tuner shares: NEFTune, ``all-linear`` resolution, safetensors weights on disk."""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from martlet.errors import ConfigError, MartletError
from martlet.tasks import TASK_TYPES, check_task_type  # noqa: F401 - re-exported

WEIGHTS = "model.safetensors"

if not os.environ.get("MARTLET_DEBUG"):
    # importing peft imports bitsandbytes, which warns on every start that an optional CPU
    # kernel package (fetched from the hub, so not installed here) is missing
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
#: the names transformers gives a sequence classification head (``--task-type seq_cls``)
HEAD_NAMES = ("score", "classifier")


def task_type(config: Any) -> str:
    """The config's task type (``causal_lm`` when it has none)."""
    return check_task_type(getattr(config, "task_type", None) or "causal_lm")


def is_seq_cls(config: Any) -> bool:
    return task_type(config) == "seq_cls"


def head_modules(model: Any) -> dict[str, Any]:
    """The sequence classification head(s) of ``model`` (top-level ``score``/``classifier``),
    by name; empty for a causal LM."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    found = {name: getattr(base, name, None) for name in HEAD_NAMES}
    return {name: m for name, m in found.items() if hasattr(m, "named_parameters")}


def train_head(model: Any) -> None:
    """Make the sequence classification head trainable (a reward model's head is new)."""
    for head in head_modules(model).values():
        head.requires_grad_(True)


class Tuner:
    """Base class: subclasses implement ``_prepare``, ``save``, ``load`` (and ``merge``).

    ``prepare`` adds what applies to every tuner (NEFTune noise) around ``_prepare``.
    """

    #: whether the tuner can train a model with a sequence classification head (``seq_cls``);
    #: where it cannot, its ``--tuner`` name and the reason, for the error
    seq_cls = True
    label = ""
    seq_cls_why: str | None = None

    def check(self, config: Any) -> None:
        """Reject, before the model loads, a config this tuner cannot train (its options'
        values are checked by their dataclasses, :mod:`martlet_peft.options`)."""

    def prepare(self, model: Any, config: Any) -> Any:
        if is_seq_cls(config):
            self._check_seq_cls(model)
        model = self._prepare(model, config)
        alpha = getattr(config, "neftune_noise_alpha", None)
        if alpha:
            enable_neftune(model, float(alpha))
        return model

    def _prepare(self, model: Any, config: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _check_seq_cls(self, model: Any) -> None:
        if not self.seq_cls:
            raise ConfigError(
                f"--tuner {self.label} cannot train a reward / sequence classification model "
                "(--task-type seq_cls)",
                why=self.seq_cls_why,
                fix="use --tuner lora (or another PEFT adapter), full or freeze",
            )
        if not head_modules(model):
            raise ConfigError(
                f"--task-type seq_cls, but {type(model).__name__} has no sequence "
                "classification head",
                why="the tuner trains the model's `score` head, and this model has none",
                fix="load the model with task_type='seq_cls' too (the same --task-type "
                "option does both in a training command)",
            )

    def create_optimizer(self, model: Any, config: Any) -> Any:
        """None: the training loop builds its default optimizer over trainable parameters."""
        return None


def enable_neftune(model: Any, alpha: float) -> Any:
    """NEFTune (Jain et al. 2023): while training, add Uniform(-1, 1) * alpha / sqrt(L * d)
    noise to the input embeddings, where L is the sequence length and d the width."""
    if alpha <= 0:
        raise ConfigError(f"--neftune-noise-alpha must be positive, got {alpha}")
    embeddings = model.get_input_embeddings()

    def add_noise(module: Any, args: Any, output: Any) -> Any:
        if not module.training:
            return output
        length, dim = output.shape[-2], output.shape[-1]
        scale = alpha / (length * dim) ** 0.5
        return output + output.new_empty(output.shape).uniform_(-scale, scale)

    embeddings.register_forward_hook(add_noise)
    return model


def decoder_layers(model: Any) -> Any:
    """The ``nn.ModuleList`` of decoder blocks of a causal LM (Llama, Qwen, Mistral, ...)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    for path in ("model.layers", "model.decoder.layers", "transformer.h", "gpt_neox.layers"):
        obj = base
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if obj is not None:
            return obj
    raise MartletError(
        f"cannot find the decoder layers of {type(base).__name__}",
        why="this tuner works on decoder-only models laid out like Llama (model.layers)",
        fix="choose another tuner, e.g. --tuner lora",
    )


def linear_module_names(model: Any, patterns: list[str]) -> list[str]:
    """Resolve ``target_modules``: ``all-linear`` means every linear layer (``nn.Linear``, or a
    quantizer's linear leaf layer) but the output head
    (the LM head, or a sequence classification ``score`` head); other entries are kept.
    Returns module-name suffixes as PEFT expects."""
    import torch

    if not any(p.lower().replace("_", "-") == "all-linear" for p in patterns):
        return list(patterns)
    heads = [model.get_output_embeddings(), *head_modules(model).values()]
    names = set()
    for name, module in model.named_modules():
        if _linear(module, torch) and not any(module is h for h in heads):
            names.add(name.rsplit(".", 1)[-1])
    others = [p for p in patterns if p.lower().replace("_", "-") != "all-linear"]
    return sorted(names | set(others))


def _linear(module: Any, torch: Any) -> bool:
    """A linear layer: ``nn.Linear`` (bitsandbytes' and quanto's are subclasses), or a
    quantizer's own leaf layer with ``in_features`` and ``out_features`` (hqq's
    ``HQQLinear``), which PEFT adapts too."""
    if isinstance(module, torch.nn.Linear):
        return True
    return (
        not any(True for _ in module.children())
        and isinstance(getattr(module, "in_features", None), int)
        and isinstance(getattr(module, "out_features", None), int)
        and not isinstance(module, torch.nn.Embedding)
    )


def save_weights(model: Any, output_dir: str, names: list[str] | None = None) -> Path:
    """Write the model's weights (or only ``names``) to ``output_dir/model.safetensors``."""
    from safetensors.torch import save_file

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {
        k: v.detach().contiguous().clone()
        for k, v in model.state_dict().items()
        if names is None or k in names
    }
    save_file(state, str(out / WEIGHTS), metadata={"format": "pt"})
    return out


def load_weights(model: Any, path: str, *, strict: bool = True) -> Any:
    """Load ``path/model.safetensors`` (or every shard named by its index) into ``model``."""
    from safetensors.torch import load_file

    folder = Path(path)
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    elif (folder / WEIGHTS).is_file():
        files = [WEIGHTS]
    else:
        raise MartletError(
            f"no weights in {folder}",
            why=f"expected {WEIGHTS} (or a sharded index) written by `martlet sft`",
            fix="pass the output folder of a training run",
        )
    state: dict[str, Any] = {}
    for name in files:
        state.update(load_file(str(folder / name)))
    missing, unexpected = model.load_state_dict(state, strict=False)
    tied = {k for k in missing if _is_tied(model, k)}
    if strict and (set(missing) - tied or unexpected):
        raise MartletError(
            f"the weights in {folder} do not fit this model",
            why=f"missing {sorted(set(missing) - tied)[:3]}, unexpected {sorted(unexpected)[:3]}",
            fix="load them into the base model they were trained from",
        )
    return model


def _is_tied(model: Any, key: str) -> bool:
    return bool(getattr(model.config, "tie_word_embeddings", False)) and key.endswith(
        "lm_head.weight"
    )


def compile_patterns(patterns: list[str]) -> list[re.Pattern[str]]:
    try:
        return [re.compile(p) for p in patterns]
    except re.error as exc:
        raise ConfigError(
            f"--trainable-parameters has a bad regular expression: {exc.pattern!r}",
            why=str(exc),
        ) from None
