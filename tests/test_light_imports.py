"""Importing the core and every in-repo plugin's entry module imports no heavy library.

`martlet --help` and `martlet plugins` import every plugin's entry module, so one plugin that
imports torch at module level would make every command slow. Deterministic: it inspects
`sys.modules` in a fresh interpreter, it does not time anything.
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

HEAVY = ("torch", "transformers", "accelerate", "peft", "datasets", "numpy")
REPO = Path(__file__).resolve().parents[1]


def _in_repo_entry_modules() -> list[str]:
    modules = []
    for ep in metadata.entry_points(group="martlet"):
        dist = ep.dist
        files = [str(f) for f in (dist.files or [])] if dist else []
        direct_url = dist.read_text("direct_url.json") if dist else None
        if direct_url and str(REPO) in json.loads(direct_url).get("url", ""):
            modules.append(ep.value)
        elif any(str(REPO) in f for f in files):
            modules.append(ep.value)
    return sorted(set(modules))


def _loaded_after(code: str) -> list[str]:
    probe = (
        f"{code}\nimport sys, json\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_every_in_repo_plugin_is_found():
    modules = _in_repo_entry_modules()
    assert {"martlet_accel.plugin", "martlet_sdk.plugin"} <= set(modules), modules


def test_entry_modules_import_no_heavy_library():
    modules = _in_repo_entry_modules() + ["martlet", "martlet.cli", "martlet_sdk.pytest_plugin"]
    code = "import importlib\n" + "\n".join(f"importlib.import_module({m!r})" for m in modules)
    assert _loaded_after(code) == []


def test_help_and_plugins_import_no_heavy_library():
    for args in (["--help"], ["plugins", "--json"], ["plugins"], ["version"]):
        code = (
            "import contextlib, io\nfrom martlet.cli import main\n"
            f"with contextlib.redirect_stdout(io.StringIO()):\n    assert main({args!r}) == 0"
        )
        assert _loaded_after(code) == [], args
