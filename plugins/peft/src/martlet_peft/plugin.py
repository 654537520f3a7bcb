"""Registers Martlet's tuners (no torch or peft import here)."""

from martlet import hookimpl
from martlet.records import TunerRecord

MARTLET_API = 1

#: each tuner's options class in martlet_peft.options (``full`` has none of its own)
_OPTIONS = {
    "full": "FullOptions",
    "lora": "LoraOptions",
    "adalora": "AdaLoraOptions",
    "ia3": "IA3Options",
    "vera": "VeraOptions",
    "boft": "BoftOptions",
    "loha": "LohaOptions",
    "lokr": "LokrOptions",
    "prompt-tuning": "PromptTuningOptions",
    "prefix-tuning": "PrefixTuningOptions",
    "freeze": "FreezeOptions",
    "galore": "GaloreOptions",
    "lisa": "LisaOptions",
    "llamapro": "LlamaProOptions",
    "reft": "ReftOptions",
}
_PEFT = ("peft>=0.15",)
_TRAIN = {"train", "cpu", "cuda"}
#: tuners that train the model's own weights; the others keep the base frozen and train added
#: parameters ("adapter": ``--torch-dtype auto`` may load their base in a half dtype)
_TRAINS_BASE = {"full", "freeze", "galore", "lisa", "llamapro"}

# name, class, summary, merge?, extra requirements, aliases
_TUNERS = (
    (
        "lora",
        "LoraTuner",
        "Low-rank adapters; rsLoRA, DoRA, PiSSA/OLoRA init, LoRA+.",
        True,
        _PEFT,
        (),
    ),
    (
        "adalora",
        "AdaLoraTuner",
        "LoRA with rank budget re-allocated by importance.",
        True,
        _PEFT,
        (),
    ),
    ("ia3", "IA3Tuner", "Learned rescaling of activations (IA3).", True, _PEFT, ()),
    (
        "vera",
        "VeraTuner",
        "Shared random projections with trained scaling vectors.",
        True,
        _PEFT,
        (),
    ),
    ("boft", "BoftTuner", "Butterfly orthogonal fine-tuning.", True, _PEFT, ()),
    ("loha", "LohaTuner", "Low-rank Hadamard-product adapters.", True, _PEFT, ()),
    ("lokr", "LokrTuner", "Low-rank Kronecker-product adapters.", True, _PEFT, ()),
    (
        "prompt-tuning",
        "PromptTuningTuner",
        "Trained virtual-token embeddings.",
        False,
        _PEFT,
        ("prompt",),
    ),
    (
        "prefix-tuning",
        "PrefixTuningTuner",
        "Trained key/value prefixes in every layer.",
        False,
        _PEFT,
        ("prefix",),
    ),
    ("full", "FullTuner", "Every weight trains.", True, (), ()),
    (
        "freeze",
        "FreezeTuner",
        "Only parameters matching regexes or the last N layers train.",
        True,
        (),
        (),
    ),
    (
        "galore",
        "GaloreTuner",
        "Full training with low-rank projected gradients (GaLore).",
        True,
        ("galore-torch>=1.0",),
        (),
    ),
    (
        "lisa",
        "LisaTuner",
        "Layer-wise sampling: a few random decoder layers train at a time.",
        True,
        (),
        (),
    ),
    (
        "llamapro",
        "LlamaProTuner",
        "Block expansion: new identity blocks train, the rest frozen.",
        True,
        (),
        ("llama-pro",),
    ),
    (
        "reft",
        "ReftTuner",
        "LoReFT interventions on hidden states (representation finetuning).",
        False,
        (),
        ("loreft",),
    ),
)

_MODULES = {
    "FullTuner": "full",
    "FreezeTuner": "full",
    "GaloreTuner": "full",
    "LisaTuner": "full",
    "LlamaProTuner": "llamapro",
    "ReftTuner": "reft",
}


@hookimpl
def martlet_tuners():
    for name, cls, summary, merge, requires, aliases in _TUNERS:
        module = _MODULES.get(cls, "peft_methods")
        yield TunerRecord(
            name=name,
            impl=f"martlet_peft.{module}:{cls}",
            summary=summary,
            aliases=aliases,
            requires=("torch", "transformers", *requires),
            capabilities=_TRAIN
            | ({"merge"} if merge else set())
            | (set() if name in _TRAINS_BASE else {"adapter"}),
            options=f"martlet_peft.options:{_OPTIONS[name]}" if name in _OPTIONS else "",
            saves=_saves(name),
        )


def _saves(name: str) -> tuple[str, ...]:
    """What the tuner's ``save`` writes: whole weights, ReFT's interventions, or a PEFT
    adapter."""
    if name in _TRAINS_BASE:
        return ("model.safetensors",)
    if name == "reft":
        return ("reft_config.json", "reft_interventions.safetensors")
    return ("adapter_config.json", "adapter_model.safetensors")
