"""Tuners backed by the ``peft`` library: LoRA (with rsLoRA, DoRA, PiSSA/OLoRA init, LoRA+),
AdaLoRA, IA3, VeRA, BOFT, LoHa, LoKr, prompt tuning and prefix tuning.

Adapters are saved in PEFT's own format (``adapter_config.json`` +
``adapter_model.safetensors``), so ``peft.PeftModel.from_pretrained`` loads them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from martlet.errors import ConfigError, MartletError, brief

from martlet_peft.base import Tuner, is_seq_cls, linear_module_names


class PeftTuner(Tuner):
    """A PEFT method: subclasses build its ``peft`` config."""

    def peft_config(self, model: Any, config: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def _prepare(self, model: Any, config: Any) -> Any:
        from peft import get_peft_model

        peft_config = self.peft_config(model, config)
        if hasattr(model, "enable_input_require_grads"):
            # keeps gradient checkpointing working with frozen embeddings
            model.enable_input_require_grads()
        try:
            model = get_peft_model(model, peft_config)
        except ValueError as exc:
            raise ConfigError(
                f"{type(self).__name__} cannot adapt this model",
                why=str(exc),
                fix=f"check the options of --tuner {getattr(config, 'tuner', self.label)} and "
                "--target-modules (the model's module names)",
            ) from exc
        return model

    def save(self, model: Any, output_dir: str) -> None:
        model.save_pretrained(output_dir, safe_serialization=True)

    def load(self, model: Any, path: str) -> Any:
        from peft import PeftModel

        return PeftModel.from_pretrained(model, path)

    def restore(self, model: Any, path: str) -> Any:
        """Load saved adapter weights into an already prepared (trainable) model."""
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        file = Path(path) / "adapter_model.safetensors"
        if not file.is_file():
            raise MartletError(f"no adapter in {path}", why=f"{file.name} is missing")
        result = set_peft_model_state_dict(model, load_file(str(file)))
        # prompt learning loads its embeddings apart and still lists them as unexpected
        unexpected = [k for k in getattr(result, "unexpected_keys", []) if k != "prompt_embeddings"]
        if unexpected:
            raise MartletError(
                f"the adapter in {path} does not fit this model",
                why=f"unexpected keys {unexpected[:3]}",
            )
        return model

    def merge(self, model: Any) -> Any:
        try:
            return model.merge_and_unload()
        except NotImplementedError as exc:  # PEFT's layers for quantized bases it cannot fold
            raise ConfigError(
                "the adapter cannot be merged into this model's quantized layers",
                why="the base is a checkpoint quantized elsewhere (AQLM, ...): there are no "
                f"unquantized weights to fold the adapter into (PEFT: {brief(exc)})",
                fix="serve the run with --adapters instead of --merge-lora, or train on an "
                "unquantized base (--quant-method quantizes it as it loads; that merges)",
                cause=exc,
            ) from exc

    def _targets(self, model: Any, config: Any) -> list[str]:
        return linear_module_names(model, list(getattr(config, "target_modules", ["all-linear"])))


def _task(config: Any) -> Any:
    """PEFT's task type: ``SEQ_CLS`` for ``--task-type seq_cls`` (PEFT then trains the ``score``
    head in full and saves it with the adapter, as ``modules_to_save``), else ``CAUSAL_LM``."""
    from peft import TaskType

    return TaskType.SEQ_CLS if is_seq_cls(config) else TaskType.CAUSAL_LM


class LoraTuner(PeftTuner):
    """LoRA; rsLoRA, DoRA, PiSSA/OLoRA initialisation and LoRA+ through options."""

    def check(self, config: Any) -> None:
        if getattr(config, "fused_lora", None) is False:
            raise ConfigError(
                "--no-fused-lora is no longer an option of the lora tuner",
                why="the fused LoRA layers are the fused-lora kernel of martlet-kernels now, "
                "switched on with the other kernels by --kernels",
                fix="pass --kernels auto,-fused-lora (in a config file: kernels: "
                "[auto, -fused-lora]) and drop fused_lora",
            )

    def peft_config(self, model: Any, config: Any) -> Any:
        from peft import LoraConfig

        init = str(getattr(config, "init_weights", "true")).lower()
        init_value: Any = {"true": True, "false": False}.get(init, init)
        if isinstance(init_value, str) and not (
            init_value in {"gaussian", "olora", "pissa", "loftq", "eva", "corda"}
            or init_value.startswith("pissa_niter_")
        ):
            raise ConfigError(
                f"unknown LoRA initialisation {init!r}",
                fix="use true, gaussian, pissa, pissa_niter_N or olora",
            )
        return LoraConfig(
            task_type=_task(config),
            r=config.lora_rank,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=self._targets(model, config),
            modules_to_save=list(config.modules_to_save) or None,
            use_rslora=config.use_rslora,
            use_dora=config.use_dora,
            init_lora_weights=init_value,
        )

    def create_optimizer(self, model: Any, config: Any) -> Any:
        ratio = getattr(config, "lora_plus_ratio", None)
        if not ratio:
            return None
        import torch
        from peft.optimizers import create_loraplus_optimizer

        return create_loraplus_optimizer(
            model,
            torch.optim.AdamW,
            lr=float(getattr(config, "learning_rate", 1e-4)),
            loraplus_lr_ratio=float(ratio),
            weight_decay=float(getattr(config, "weight_decay", 0.0)),
        )


class AdaLoraTuner(PeftTuner):
    """AdaLoRA: LoRA whose rank budget is re-allocated by importance during training."""

    def peft_config(self, model: Any, config: Any) -> Any:
        from peft import AdaLoraConfig

        total = config.adalora_total_step or getattr(config, "max_steps", -1)
        if not total or total <= 0:
            raise ConfigError(
                "AdaLoRA needs the total number of training steps",
                fix="pass --max-steps N or --adalora-total-step N",
            )
        return AdaLoraConfig(
            task_type=_task(config),
            target_r=config.adalora_target_r,
            init_r=config.adalora_init_r,
            tinit=config.adalora_tinit,
            tfinal=config.adalora_tfinal,
            deltaT=config.adalora_deltaT,
            orth_reg_weight=config.adalora_orth_reg_weight,
            total_step=total,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=self._targets(model, config),
        )

    def regularization(self, model: Any) -> Any:
        """The orthogonal regularisation AdaLoRA adds to the loss (as PEFT's forward would)."""
        import torch

        weight = model.peft_config[model.active_adapter].orth_reg_weight
        terms = []
        for name, param in model.named_parameters():
            if ("lora_A" in name or "lora_B" in name) and param.requires_grad:
                para_cov = param @ param.T if "lora_A" in name else param.T @ param
                eye = torch.eye(*para_cov.size(), out=torch.empty_like(para_cov))
                terms.append(torch.norm(para_cov - eye, p="fro"))
        if not terms:
            return None
        return weight * torch.stack(terms).mean()

    def on_step(self, model: Any, step: int) -> None:
        model.base_model.update_and_allocate(step)

    # A saved AdaLoRA adapter is pruned to its allocated ranks and its importance statistics
    # are not saved, so a run cannot continue from it exactly.
    restore = None


class IA3Tuner(PeftTuner):
    """IA3: learned rescaling vectors on activations."""

    def peft_config(self, model: Any, config: Any) -> Any:
        from peft import IA3Config

        targets = self._targets(model, config)
        feedforward = [m for m in config.ia3_feedforward_modules if m in targets]
        return IA3Config(
            task_type=_task(config), target_modules=targets, feedforward_modules=feedforward
        )


class VeraTuner(PeftTuner):
    """VeRA: shared frozen random projections with trained scaling vectors."""

    def peft_config(self, model: Any, config: Any) -> Any:
        from peft import VeraConfig

        return VeraConfig(
            task_type=_task(config), r=config.vera_rank, target_modules=self._targets(model, config)
        )


class BoftTuner(PeftTuner):
    """BOFT: butterfly-factorised orthogonal fine-tuning."""

    def peft_config(self, model: Any, config: Any) -> Any:
        from peft import BOFTConfig

        return BOFTConfig(
            task_type=_task(config),
            boft_block_size=config.boft_block_size,
            boft_n_butterfly_factor=config.boft_n_butterfly_factor,
            boft_dropout=config.boft_dropout,
            target_modules=self._targets(model, config),
        )


class LohaTuner(PeftTuner):
    """LoHa: low-rank Hadamard-product adapters."""

    def peft_config(self, model: Any, config: Any) -> Any:
        from peft import LoHaConfig

        return LoHaConfig(
            task_type=_task(config),
            r=config.loha_rank,
            alpha=config.loha_alpha,
            target_modules=self._targets(model, config),
        )


class LokrTuner(PeftTuner):
    """LoKr: low-rank Kronecker-product adapters."""

    def peft_config(self, model: Any, config: Any) -> Any:
        from peft import LoKrConfig

        return LoKrConfig(
            task_type=_task(config),
            r=config.lokr_rank,
            alpha=config.lokr_alpha,
            target_modules=self._targets(model, config),
        )


class PromptTuningTuner(PeftTuner):
    """Prompt tuning: trained virtual-token embeddings prepended to the input."""

    def peft_config(self, model: Any, config: Any) -> Any:
        from peft import PromptTuningConfig, PromptTuningInit

        text = getattr(config, "prompt_tuning_init_text", None)
        kwargs: dict[str, Any] = {}
        if text:
            kwargs = dict(
                prompt_tuning_init=PromptTuningInit.TEXT,
                prompt_tuning_init_text=text,
                tokenizer_name_or_path=getattr(config, "model", None),
            )
        return PromptTuningConfig(
            task_type=_task(config), num_virtual_tokens=config.num_virtual_tokens, **kwargs
        )

    def merge(self, model: Any) -> Any:
        raise ConfigError(
            "prompt tuning cannot be merged into the model",
            why="its virtual tokens are inputs, not weights",
            fix="serve it with --adapters instead of --merge-lora",
        )


class PrefixTuningTuner(PromptTuningTuner):
    """Prefix tuning: trained key/value prefixes at every attention layer."""

    seq_cls = False
    label = "prefix-tuning"
    seq_cls_why = (
        "PEFT's prefix tuning passes its prefixes as a key/value cache, which transformers' "
        "sequence classification models do not take"
    )

    def peft_config(self, model: Any, config: Any) -> Any:
        from peft import PrefixTuningConfig

        return PrefixTuningConfig(
            task_type=_task(config), num_virtual_tokens=config.num_virtual_tokens
        )
