"""``martlet export``: a trained run (or a model) becomes a standalone Hugging Face model."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import click
from martlet.cli import config_command
from martlet.config import apply_implied, option
from martlet.errors import ConfigError, MartletError

#: the quantizer record --to-gguf selects (martlet-gguf's)
GGUF = "gguf"


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
        help="Quantize while exporting with this quantizer (gptq, awq, hqq, quanto, gguf, ...: "
        "`martlet plugins --kind quantizers`), with its own options.",
        aliases=("quantization_method",),
        names_of="quantizers",
        implied_by={"to_gguf": GGUF},
        metavar="NAME",
    )
    to_gguf: bool = option(
        False,
        help="Write one GGUF file for llama.cpp and Ollama: the same as --quant-method gguf "
        "(its --gguf-type chooses the tensor type).",
    )
    quant_bits: int | None = option(
        None,
        help="Bits per weight for --quant-method (default: the quantizer's only width).",
        aliases=("bits",),
        metavar="N",
    )
    dataset: list[str] = option(
        default_factory=lambda: ["sample-sft"],
        help="Calibration data for quantizers that need it (GPTQ, AWQ): Martlet datasets, "
        "encoded with the model's chat template.",
        aliases=("calibration_dataset",),
        metavar="SPEC",
    )
    quant_n_samples: int = option(
        128, help="Calibration rows for --quant-method (at most).", metavar="N"
    )
    quant_max_length: int = option(
        512, help="Tokens per calibration row (longer rows are cut).", metavar="N"
    )
    output_type: Literal["hf", "vllm", "sglang", "lmdeploy"] = option(
        "hf",
        help="The serving engine the export is for: hf (transformers) or an engine that must "
        "load it as written (checked against what the quantizer's exports are loaded by).",
    )
    quant_report: bool = option(
        True,
        help="With --quant-method: load the export back, measure its held-out perplexity "
        "next to the unquantized model's, memory and size on disk; print them and write "
        "quantization.json.",
    )
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

    def __post_init__(self) -> None:
        if self.to_gguf:
            if self.quant_method not in (None, GGUF):
                raise ConfigError(
                    f"--to-gguf and --quant-method {self.quant_method} ask for two exports",
                    fix="pass one of them",
                )
        apply_implied(self)  # --to-gguf: --quant-method gguf
        parent = getattr(super(), "__post_init__", None)
        if parent is not None:
            parent()


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
    if config.quant_method:  # checked before the (slow) model load, so a mistake fails fast
        from martlet.compose import chosen_options
        from martlet.quantize import chosen

        quantizer = chosen(
            config.quant_method,
            config.quant_bits,
            stage="export",
            options=chosen_options(config, "quant_method"),
        )
    _check_output_type(config, quantizer)
    load_options: dict[str, Any] = {"torch_dtype": config.torch_dtype}
    if config.device:  # chosen through the accelerator records (the CPU by default)
        from martlet.devices import place

        load_options["device_map"] = place(config.device).torch_device
    info: dict[str, Any] = {}
    if config.adapters:
        # a QLoRA run's adapter goes on the unquantized base: it merges into those weights
        # (which --quant-method may quantize again), where ms-swift refuses to merge
        model, tokenizer, run = load_run(config.adapters, quantized=False, **load_options)
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
        from martlet.quality import held_out_texts, perplexity, report

        from martlet_export.calibration import calibration_rows

        reference = perplexity(model, tokenizer, held_out_texts()) if config.quant_report else None

        calibration = calibration_rows(
            config.dataset,
            tokenizer,
            max_length=config.quant_max_length,
            limit=config.quant_n_samples,
        )
        quantizer.quantizer.export(
            model,
            tokenizer,
            str(out),
            quantizer.bits,
            calibration=calibration,
            **quantizer.options,
        )
        info.update(quant_method=quantizer.name, quant_bits=quantizer.bits)
        if config.quant_report:  # the export as a loader reads it back
            del model
            written = _written(out)
            loaded, loaded_tokenizer = martlet.load_model(written, torch_dtype="float32")
            report(
                loaded,
                loaded_tokenizer,
                method=quantizer.name,
                bits=quantizer.bits,
                out_dir=out,
                reference=reference,
                written=written,
            )
    else:
        model.save_pretrained(str(out), safe_serialization=True)
        tokenizer.save_pretrained(str(out))
    (out / "martlet_export.json").write_text(json.dumps(info, indent=2))
    return out


def _check_output_type(config: ExportConfig, quantizer: Any) -> None:
    """``--output-type ENGINE``: the export must be what that engine loads."""
    engine = config.output_type
    if engine == "hf":
        return
    if quantizer is None:  # a merged model in transformers' layout: every engine loads it
        return
    if engine not in quantizer.record.engines:
        loads = ", ".join(quantizer.record.engines) or "none of vllm, sglang, lmdeploy"
        raise ConfigError(
            f"{engine} does not load {quantizer.name} exports",
            why=f"what the {quantizer.name} quantizer writes is loaded by: {loads}",
            fix=f"export with a method {engine} loads (e.g. gptq or awq), or drop --output-type",
        )


def _written(out: Path) -> str:
    """What an export wrote, as a loader reads it: the folder, or its one single-file model."""
    files = [p for p in out.iterdir() if p.suffix == ".gguf"]
    return str(files[0]) if len(files) == 1 else str(out)


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
