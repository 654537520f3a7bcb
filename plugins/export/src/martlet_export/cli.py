"""``martlet export``: a trained run (or a model) becomes a standalone Hugging Face model."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import click
from martlet.cli import config_command
from martlet.config import option
from martlet.errors import ConfigError, MartletError


@dataclass(kw_only=True)
class ExportConfig:
    adapters: str | None = option(
        None,
        help="A run directory (or checkpoint) of `martlet sft`: base model, tuner and "
        "template come from its config.yaml.",
        aliases=("ckpt_dir", "adapter"),
    )
    model: str | None = option(
        None,
        help="A model to export without a run (id, folder, .gguf file).",
        aliases=("model_type", "model_id_or_path"),
    )
    merge_lora: bool = option(
        False,
        help="Fold the trained adapter into the weights (LoRA and other mergeable tuners).",
        aliases=("merge",),
    )
    quant_method: str | None = option(
        None,
        help="Quantize while exporting with this quantizer (gptq, awq, bnb, ...).",
        aliases=("quantization_method",),
    )
    quant_bits: int | None = option(None, help="Bits for --quant-method.", aliases=("bits",))
    output_dir: str = option(help="Where to write the exported model.", aliases=("output",))
    torch_dtype: Literal["auto", "bfloat16", "float16", "float32"] = option(
        "auto", help="Dtype to load and save in."
    )
    overwrite: bool = option(False, help="Replace a non-empty --output-dir.")
    device: str | None = option(
        None,
        help="The accelerator to load and merge on: NAME[:INDEX] (cpu, cuda:1, a plugin's "
        "device; default: the CPU).",
    )


@config_command(ExportConfig, name="export")
def export(config: ExportConfig) -> None:
    """Merge a run's adapter into its base model, or export a quantized copy of a model."""
    result = run_export(config)
    click.echo(f"exported to {result}")


def run_export(config: ExportConfig) -> Path:
    """Do what ``martlet export`` does; return the output directory."""
    import martlet
    from martlet.manager import get_manager
    from martlet.runs import load_run

    if not config.adapters and not config.model:
        raise ConfigError("nothing to export", fix="pass --adapters RUN_DIR or --model ID")
    if not config.merge_lora and not config.quant_method:
        raise ConfigError(
            "nothing to do", fix="pass --merge-lora (with --adapters) and/or --quant-method NAME"
        )
    out = Path(config.output_dir).expanduser()
    check_output_dir(out, config.adapters)
    if out.exists() and any(out.iterdir()) and not config.overwrite:
        raise ConfigError(f"{out} is not empty", fix="choose another --output-dir or --overwrite")
    quantizer = None
    if config.quant_method:  # resolve before the (slow) model load, so a typo fails fast
        record = get_manager().registry.get("quantizers", config.quant_method)
        if "export" not in record.stages:
            raise ConfigError(
                f"quantizer {record.name!r} works at load time only, not for export",
                fix="pick a quantizer with the export stage: `martlet plugins --kind quantizers`",
            )
        quantizer = record.load()()
    load_options: dict[str, Any] = {"torch_dtype": config.torch_dtype}
    if config.device:  # chosen through the accelerator records (the CPU by default)
        from martlet.devices import place

        load_options["device_map"] = place(config.device).torch_device
    info: dict[str, Any] = {}
    if config.adapters:
        model, tokenizer, run = load_run(config.adapters, **load_options)
        info.update(base_model=run.model, tuner=run.tuner, adapters=str(run.path))
        if config.merge_lora:
            record = get_manager().registry.get("tuners", run.tuner)
            if "merge" not in record.capabilities:
                raise MartletError(
                    f"a {run.tuner} result cannot be merged into the model",
                    why=f"the tuner {run.tuner!r} does not claim the merge capability",
                    fix="serve it with --adapters instead",
                )
            model = record.load()().merge(model)
            info["merged"] = True
    else:
        if config.merge_lora:
            raise ConfigError("--merge-lora needs --adapters RUN_DIR")
        model, tokenizer = martlet.load_model(config.model, **load_options)
        info["base_model"] = config.model
    out.mkdir(parents=True, exist_ok=True)
    _remove_stale_adapter(out)
    if quantizer is not None:
        quantizer.export(model, tokenizer, str(out), config.quant_bits)
        info.update(quant_method=config.quant_method, quant_bits=config.quant_bits)
    else:
        model.save_pretrained(str(out), safe_serialization=True)
        tokenizer.save_pretrained(str(out))
    (out / "martlet_export.json").write_text(json.dumps(info, indent=2))
    return out


#: what a PEFT adapter is saved as; loaders apply an adapter they find next to a model's weights
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin")


def check_output_dir(out: Path, adapters: str | None) -> None:
    """Refuse an ``--output-dir`` that cannot be a folder, or that is a training run's own
    folder (the run being exported or any other): the exported weights would sit next to the
    run's adapter, which loaders apply again on weights that already include it, and would
    replace what the run trained.

    Raises:
        ConfigError: before anything loads.
    """
    from martlet.paths import nearest_existing
    from martlet.rundirs import run_folder

    if out.exists() and not out.is_dir():
        raise ConfigError(
            f"--output-dir {out} is a file",
            why="the exported model is a folder of files",
            fix="choose a folder path for --output-dir",
        )
    ancestor = nearest_existing(out.parent)
    if not ancestor.is_dir():
        raise ConfigError(
            f"cannot create --output-dir {out}",
            why=f"{ancestor} is a file, not a folder",
            fix="choose an --output-dir whose parent folders are folders",
        )
    if not out.is_dir():
        return
    target = out.resolve()
    source = Path(adapters).expanduser() if adapters else None
    if source is not None and source.is_dir():
        run = run_folder(source.resolve())
        if target in {source.resolve(), run}:
            raise ConfigError(
                f"--output-dir {out} is the run being exported",
                why="the exported model would sit next to the run's adapter "
                "(adapter_config.json), so loading it would apply the adapter a second time "
                "on weights that already include it, and the run's own files would be replaced",
                fix=f"choose another --output-dir, e.g. {out.name}-merged next to it",
            )
    if run_folder(target) is not None:
        raise ConfigError(
            f"--output-dir {out} is a training run's folder",
            why="exporting there would replace what the run trained, and the exported model "
            "would sit next to its adapter, which loaders would apply a second time",
            fix="choose another --output-dir",
        )


def _remove_stale_adapter(out: Path) -> None:
    """Delete adapter files an earlier write left in ``out`` (only with --overwrite: a
    non-empty folder is refused otherwise): next to the exported weights, a loader would apply
    them as an adapter."""
    stale = [out / name for name in ADAPTER_FILES if (out / name).is_file()]
    for file in stale:
        file.unlink()
    if stale:
        names = ", ".join(f.name for f in stale)
        click.echo(f"martlet: removed {names} left in {out} by an earlier write", err=True)
