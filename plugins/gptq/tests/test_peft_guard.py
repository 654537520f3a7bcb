"""A LoRA command does not import gptqmodel unless the model has its layers (found broken:
PEFT imported it wherever it was installed: its banner on stdout, ~140 MiB and four threads in
every LoRA training run), and PEFT still sees gptqmodel's layers once gptqmodel is imported."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

PLUGINS = ("train", "hf", "data", "peft", "accel", "gptq")


def _run(code: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MARTLET_PLUGINS": ",".join(PLUGINS)}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip


def test_lora_training_leaves_gptqmodel_unimported(tiny_model_dir, tmp_path):
    done = _run(
        """
        import sys
        from martlet.cli import main
        code = main(sys.argv[1:])
        print("GPTQMODEL", "gptqmodel" in sys.modules)
        sys.exit(code)
        """,
        "sft", "--model", str(tiny_model_dir), "--dataset", "sample-sft#8", "--max-steps", "1",
        "--output-dir", str(tmp_path / "run"), "--disable-progress-bar",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "GPTQMODEL False" in done.stdout, done.stdout[-2000:]
    assert "GPT-QModel" not in done.stdout + done.stderr  # its banner
    assert (tmp_path / "run" / "adapter_model.safetensors").is_file()


def test_peft_answers_for_gptqmodel_once_it_is_imported(tiny_model_dir):
    done = _run(
        """
        import sys
        import martlet
        martlet.load_model(sys.argv[1], torch_dtype="float32")  # the hook guards PEFT
        from peft.import_utils import is_gptqmodel_available
        from peft.tuners.lora import gptq
        before = is_gptqmodel_available(), gptq.is_gptqmodel_available()
        assert "gptqmodel" not in sys.modules
        import gptqmodel
        after = is_gptqmodel_available(), gptq.is_gptqmodel_available()
        print("ANSWERS", before, after)
        """,
        str(tiny_model_dir),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ANSWERS (False, False) (True, True)" in done.stdout, done.stdout[-2000:]
