"""Start-up time of the CLI with every in-repo plugin installed.

Times `martlet --help`, `martlet plugins` and `martlet plugins --json` as separate processes,
the median of N runs each (after one warm-up run), and prints a Markdown table. Targets on
the 2-core reference machine: under 0.3 s for `--help` and 0.5 s for `plugins`.

    python bench/startup.py [--runs 10]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = (["--help"], ["plugins"], ["plugins", "--json"])
TARGETS = {"--help": 0.3, "plugins": 0.5, "plugins --json": 0.5}


def martlet_executable() -> str:
    here = Path(sys.executable).parent / "martlet"
    return str(here) if here.exists() else shutil.which("martlet") or "martlet"


def time_once(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    exe = martlet_executable()
    listed = subprocess.run([exe, "plugins"], capture_output=True, text=True, check=True).stdout
    plugins = [ln.split()[0] for ln in listed.splitlines()[1:] if ln and not ln.startswith(" ")]
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"plugins loaded: {', '.join(plugins)}")
    print(f"runs per command: {args.runs} (median; one warm-up run first)\n")
    print("| command | median s | min s | max s | target s |")
    print("|---|---|---|---|---|")
    rows = [(f"martlet {' '.join(cmd)}", [exe, *cmd], TARGETS[" ".join(cmd)]) for cmd in COMMANDS]
    # the floor: the interpreter alone, and importing the core without running a command
    rows.append(("python -c pass (baseline)", [sys.executable, "-c", "pass"], "-"))
    rows.append(("python -c 'import martlet'", [sys.executable, "-c", "import martlet"], "-"))
    for label, argv, target in rows:
        time_once(argv)
        times = [time_once(argv) for _ in range(args.runs)]
        print(
            f"| `{label}` | {statistics.median(times):.3f} | {min(times):.3f} | "
            f"{max(times):.3f} | {target} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
