"""The core imports no heavy library: checked in a fresh interpreter, not timed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

HEAVY = ("torch", "transformers")

PROBE = f"""
import contextlib, io, json, sys
import martlet
import martlet.cli
import martlet.config, martlet.interfaces, martlet.registry, martlet.providers, martlet.paths
after_import = [m for m in {HEAVY!r} if m in sys.modules]
from martlet.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    codes = [main(["--help"]), main(["plugins", "--json"])]
print(json.dumps({{
    "after_import": after_import,
    "after_commands": [m for m in {HEAVY!r} if m in sys.modules],
    "codes": codes,
    "ran": ["martlet.core_commands" in sys.modules, "click" in sys.modules],
}}))
"""


def test_core_and_its_commands_leave_torch_and_transformers_unimported():
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARTLET_")}
    env["MARTLET_PLUGINS"] = ""  # the core alone; tests/ checks every in-repo plugin
    proc = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["codes"] == [0, 0]
    assert report["ran"] == [True, True]  # the commands really ran in this interpreter
    assert report["after_import"] == []
    assert report["after_commands"] == []
