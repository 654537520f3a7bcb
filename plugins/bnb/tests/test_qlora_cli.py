"""QLoRA through the real commands on the tiny model (hidden size 96: not a multiple of
bitsandbytes' 64-weight blocks): `martlet sft --quant-method bnb --quant-bits 4 --tuner lora`
trains, `martlet infer --adapters RUN` answers on the base quantized again, and `martlet export
--adapters RUN --merge-lora` merges the adapter into the unquantized base."""

from __future__ import annotations

import json

import martlet
import pytest
import torch
import yaml
from martlet_sdk.isolation import activated, isolated_manager
from martlet_sdk.runner import run_cli

PLUGINS = ("train", "hf", "data", "peft", "accel", "bnb", "serve", "engine-pt", "export")


def logits(model, ids):
    model.eval()
    with torch.no_grad():
        return model(input_ids=ids).logits.float()


def relative(a, b) -> float:
    return float((a - b).norm() / b.norm())


def linear4bit_layers(model):
    import bitsandbytes as bnb

    return [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]


@pytest.fixture(scope="module")
def qlora_run(tmp_path_factory, tiny_model_dir):
    """`martlet sft` QLoRA on the tiny model (float32: the suite's CPU reports no native bf16),
    evaluated on held-out rows before and after: ``(run folder, the command's result)``."""
    out = tmp_path_factory.mktemp("qlora") / "run"
    with activated(isolated_manager(*PLUGINS)):
        result = run_cli(
            [
                "sft", "--model", str(tiny_model_dir),
                "--quant-method", "bnb", "--quant-bits", "4", "--tuner", "lora",
                "--dataset", "sample-sft#16", "--split-dataset-ratio", "0.25",
                "--max-steps", "4", "--eval-on-start", "--eval-steps", "4",
                "--learning-rate", "1e-2", "--lora-rank", "8", "--per-device-train-batch-size", "4",
                "--output-dir", str(out), "--logging-steps", "1", "--seed", "0",
                "--disable-progress-bar",
            ],
            env={"HF_HUB_OFFLINE": "1"},
        )  # fmt: skip
    return out, result


@pytest.fixture
def cli(martlet_manager, martlet_cli):
    martlet_manager(*PLUGINS)
    return martlet_cli


def test_qlora_trains_and_the_held_out_loss_goes_down(qlora_run):
    out, result = qlora_run
    assert result.exit_code == 0, result.stderr + result.stdout
    assert "quantized: bnb 4-bit" in result.stdout  # the quality line of the run
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["quant_method"]["name"] == "bnb" and config["quant_bits"] == 4
    assert config["quant_method"]["bnb_4bit_quant_type"] == "nf4"
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [m["loss"] for m in metrics if "loss" in m]
    evals = [m for m in metrics if "eval_loss" in m]
    assert len(losses) == 4 and all(loss == loss for loss in losses)  # no NaN
    assert [m["step"] for m in evals] == [0, 4]
    assert evals[-1]["eval_loss"] < evals[0]["eval_loss"] - 0.05, evals
    report = json.loads((out / "quantization.json").read_text())
    assert report["method"] == "bnb" and report["bits"] == 4
    assert report["perplexity_ratio"] < 1.1  # 4 bits cost little on the held-out text


def test_infer_answers_on_the_base_quantized_again(qlora_run, cli):
    out, trained = qlora_run
    assert trained.exit_code == 0, trained.stderr
    result = cli("infer", "--adapters", str(out), "--query", "Hi", "--max-new-tokens", "8")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip()
    model, _, run = martlet.load_run(out)  # what `infer --adapters` loads
    assert run.quantization()["quant_method"] == "bnb"
    layers = linear4bit_layers(model)
    assert len(layers) == 14 and not any(layer.support_avx512bf16_for_cpu for layer in layers)


def test_merge_lora_goes_into_the_unquantized_base(qlora_run, cli, tiny_model_dir, tmp_path):
    out, trained = qlora_run
    assert trained.exit_code == 0, trained.stderr
    merged_dir = tmp_path / "merged"
    result = cli("export", "--adapters", str(out), "--merge-lora", "--output-dir", str(merged_dir))
    assert result.exit_code == 0, result.stderr
    assert "quantization_config" not in json.loads((merged_dir / "config.json").read_text())
    merged, _ = martlet.load_model(str(merged_dir), torch_dtype="float32")
    assert not linear4bit_layers(merged)

    ids = torch.randint(3, 200, (2, 16), generator=torch.Generator().manual_seed(1))
    qlora, _, _ = martlet.load_run(out)  # the adapter on the 4-bit base
    unquantized, _, _ = martlet.load_run(out, quantized=False)  # on the unquantized base
    plain, _ = martlet.load_model(str(tiny_model_dir), torch_dtype="float32")
    quantized, _ = martlet.load_model(
        str(tiny_model_dir), torch_dtype="float32", quant_method="bnb", quant_bits=4
    )
    quantization_error = relative(logits(quantized, ids), logits(plain, ids))
    out_merged = logits(merged, ids)
    # the merge is exact on the unquantized base, and holds what the adapter learned
    torch.testing.assert_close(out_merged, logits(unquantized, ids), rtol=1e-4, atol=1e-4)
    assert relative(out_merged, logits(plain, ids)) > 0.2 * quantization_error
    # and it answers as the QLoRA model did, within the 4 bits' own error
    assert relative(out_merged, logits(qlora, ids)) < 1.5 * quantization_error
