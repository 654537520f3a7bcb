"""With martlet-hf installed but disabled (``MARTLET_DISABLE_PLUGINS=hf``), what needs it says
so and how to enable it, rather than that nothing is installed.

The manager reads the variable when the process starts, so these run the real CLI in a fresh
interpreter."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

CLI = "import sys; from martlet.cli import main; sys.exit(main())"


def martlet(*args: str, env: dict[str, str], cwd) -> subprocess.CompletedProcess:
    environ = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MARTLET_") or k in ("MARTLET_CACHE", "MARTLET_CPU_BF16")
    }
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-c", CLI, *args],
        capture_output=True,
        text=True,
        env=environ,
        cwd=cwd,
        timeout=300,
    )


@pytest.mark.slow
def test_sft_with_hf_disabled_says_it_is_disabled_and_how_to_enable_it(tmp_path):
    pytest.importorskip("martlet_train")
    pytest.importorskip("martlet_data")
    data = tmp_path / "rows.jsonl"
    row = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
    data.write_text(json.dumps(row) + "\n")
    args = ("sft", "--model", "M", "--dataset", str(data), "--output-dir", str(tmp_path / "out"))
    result = martlet(*args, env={"MARTLET_DISABLE_PLUGINS": "hf"}, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "Error: no model loader can read 'M'\n  why: plugin 'hf' (martlet-hf " in result.stderr
    # (other loaders in use, e.g. a quantizer's for its own folders, are named after it)
    assert (
        "), which provides model loaders, is installed but disabled by MARTLET_DISABLE_PLUGINS"
        in result.stderr
    )
    assert "  fix: enable it: unset MARTLET_DISABLE_PLUGINS; or " in result.stderr
    assert "installed: none" not in result.stderr
    # with another plugin disabled too, the fix keeps that one disabled
    result = martlet(*args, env={"MARTLET_DISABLE_PLUGINS": "wandb,martlet-hf"}, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "  fix: enable it: set MARTLET_DISABLE_PLUGINS=wandb (without hf); or " in (
        result.stderr
    )


@pytest.mark.slow
def test_a_command_of_the_disabled_plugin_says_how_to_enable_it(tmp_path):
    result = martlet("model", "list", env={"MARTLET_DISABLE_PLUGINS": "hf"}, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith(
        "Error: command 'model' is provided by plugin 'hf' (martlet-hf "
    )
    assert "which is installed but disabled by MARTLET_DISABLE_PLUGINS\n" in result.stderr
    assert "  why: MARTLET_DISABLE_PLUGINS=hf is set\n" in result.stderr
    assert "  fix: enable it: unset MARTLET_DISABLE_PLUGINS\n" in result.stderr
