"""The ``aqlm`` model loader: an AQLM checkpoint folder through the ``hf`` loader, with its
``quantization_config`` corrected before transformers reads it.

An AQLM checkpoint's ``quantization_config.linear_weights_not_to_quantize`` lists the weights
stored unquantized by parameter name (``"lm_head.weight"``, ``"model.embed_tokens.weight"``):
what AQLM's ``convert_to_hf.py`` writes, and what transformers 4 compared layer names plus
``.weight`` against. transformers 5's ``replace_with_aqlm_linear`` matches the list against
*module* names instead (``should_convert_module("lm_head", ["lm_head.weight"])`` is True), so
it makes the output head an AQLM layer too, whose codes the checkpoint does not have: the model
loads with random codebooks and computes NaN. This loader adds the module names (the listed
weights without ``.weight``) to the list, keeping the old spellings for transformers 4, and
hands the corrected config to the hf loader (``model_kwargs={"config": ...}``), which loads
everything else as it always does.

``martlet.load_model`` picks this loader by name for folders whose ``quant_method`` is
``aqlm``; its :meth:`AqlmLoader.can_load` claims nothing, because the hf loader reads every
folder and exactly one loader may claim a source (a tokenizer, or a named loader, still comes
from the hf loader). Nothing heavy is imported at module level: ``can_load`` is asked on every
model load that names no loader.
"""

from __future__ import annotations

from typing import Any

from martlet.errors import ConfigError, MartletError, brief

from martlet_aqlm.layers import import_aqlm


def quantization_config(config: Any) -> dict[str, Any]:
    """A model config's ``quantization_config`` as a dict (transformers keeps a dict before
    loading and an ``AqlmConfig`` after); empty when there is none."""
    qc = getattr(config, "quantization_config", None)
    if qc is None:
        return {}
    if hasattr(qc, "to_dict"):
        qc = qc.to_dict()
    return dict(qc) if isinstance(qc, dict) else {}


def kept_modules(qc: dict[str, Any], tied: bool) -> list[str]:
    """The module names of the linear layers an AQLM checkpoint stores unquantized: its listed
    weights without ``.weight``, and the output head when it is tied to the (never quantized)
    input embeddings."""
    listed = [str(n) for n in qc.get("linear_weights_not_to_quantize") or []]
    names = [n[: -len(".weight")] for n in listed if n.endswith(".weight")]
    return list(dict.fromkeys(names + (["lm_head"] if tied else [])))


def corrected_config(source: str, options: dict[str, Any]) -> Any:
    """The transformers config of the AQLM checkpoint ``source`` with the module names of
    :func:`kept_modules` added to ``linear_weights_not_to_quantize``.

    Raises:
        MartletError: the config cannot be read.
        ConfigError: it is not an AQLM checkpoint.
    """
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(
            source,
            trust_remote_code=bool(options.get("trust_remote_code", False)),
            revision=options.get("revision") or options.get("model_revision"),
            local_files_only=True,
        )
    except Exception as exc:  # noqa: BLE001 - reported with its cause
        raise MartletError(
            f"cannot read the config of {source!r}",
            why=brief(exc),
            fix="give the folder of an AQLM checkpoint (config.json and its weights)",
            cause=exc,
        ) from exc
    qc = quantization_config(config)
    if str(qc.get("quant_method", "")).lower() != "aqlm":
        raise ConfigError(
            f"{source!r} is not an AQLM checkpoint",
            why="its config.json has no quantization_config with quant_method 'aqlm'",
            fix="leave out --model-loader aqlm: other folders load with the hf loader",
        )
    listed = list(qc.get("linear_weights_not_to_quantize") or [])
    tied = bool(getattr(config, "tie_word_embeddings", False))
    qc["linear_weights_not_to_quantize"] = list(dict.fromkeys(listed + kept_modules(qc, tied)))
    config.quantization_config = qc
    return config


def _hf_loader() -> Any:
    from martlet.manager import get_manager

    return get_manager().registry.get("model_loaders", "hf").load()()


class AqlmLoader:
    """Loads AQLM checkpoint folders (``quant_method: "aqlm"``) through the hf loader."""

    def can_load(self, source: str) -> bool:
        return False  # chosen by name (see the module docstring)

    def load(self, source: str, **options: Any) -> tuple[Any, Any]:
        if options.get("quantization_config") is not None:
            raise ConfigError(
                f"{source} is quantized with aqlm already",
                fix="leave out --quant-method: the folder loads quantized as it is",
            )
        if options.get("task_type") == "seq_cls":
            # transformers hands from_pretrained's num_labels to the model, not to a given
            # config, and the corrected config must be given
            raise ConfigError(
                "an AQLM checkpoint cannot load with a sequence classification head",
                why="its config is corrected before loading, and transformers then refuses "
                "num_labels",
                fix="train the reward model on the unquantized model, or quantize it as it "
                "loads (--quant-method bnb or hqq)",
            )
        import_aqlm()
        config = corrected_config(source, options)
        model_kwargs = dict(options.get("model_kwargs") or {}, config=config)
        return _hf_loader().load(source, **{**options, "model_kwargs": model_kwargs})

    def load_tokenizer(self, source: str, **options: Any) -> Any:
        return _hf_loader().load_tokenizer(source, **options)
