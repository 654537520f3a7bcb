"""Helpers for tests that install plugins for real: fake distributions and ``pip --target``.

* :class:`FakeSite` — a folder of ``*.dist-info`` directories and the modules they point at.
  Put on ``sys.path``/``PYTHONPATH`` it is seen by ``importlib.metadata`` like installed
  packages, so discovery can be tested against working, broken or conflicting plugins.
* :func:`install_into` — ``pip install --no-deps --target`` of package folders, and
  :func:`env_with` — an environment whose ``PYTHONPATH`` puts such a folder first.
* :func:`run_cli` — ``martlet ARGS`` in a fresh interpreter, offline; :func:`logged` — the
  metrics a training run logged per step; :func:`assert_same_tensors` — two safetensors
  files hold the same tensors (what runs that should train alike are compared by).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterable
from pathlib import Path

CLI = "import sys; from martlet.cli import main; sys.exit(main())"


class FakeSite:
    """A folder of fake installed distributions (``*.dist-info`` + modules)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def module(self, name: str, source: str) -> Path:
        path = self.root / f"{name}.py"
        path.write_text(textwrap.dedent(source), encoding="utf-8")
        return path

    def dist(
        self,
        name: str,
        version: str = "1.0",
        *,
        entry_points: dict[str, str],
        modules: dict[str, str] | None = None,
        groups: dict[str, dict[str, str]] | None = None,
    ) -> Path:
        """Install distribution ``name`` with ``[martlet]`` entry points ``{ep_name: module}``
        (and those of other ``groups``: ``{group: {ep_name: value}}``)."""
        info = self.root / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8"
        )
        lines = ["[martlet]"] + [f"{ep} = {mod}" for ep, mod in entry_points.items()]
        for group, entries in (groups or {}).items():
            lines += ["", f"[{group}]"] + [f"{ep} = {value}" for ep, value in entries.items()]
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        for mod, source in (modules or {}).items():
            self.module(mod, source)
        # the top-level modules it ships, as a built wheel lists them (what
        # importlib.metadata.packages_distributions reads)
        tops = sorted({m.split(".")[0] for m in (modules or {})})
        (info / "top_level.txt").write_text("".join(f"{t}\n" for t in tops), encoding="utf-8")
        return info


def install_into(packages: Iterable[Path], target: Path) -> Path:
    """Build and install package folders into ``target`` (no dependencies, no isolation)."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            *map(str, packages),
        ],
        check=True,
    )
    return target


def env_with(site: Path) -> dict[str, str]:
    """``os.environ`` with ``site`` first on ``PYTHONPATH``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    return env


def run_cli(
    *args: str,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess:
    """``martlet ARGS`` in a fresh interpreter with this environment, ``env`` added and the
    hub offline (``HF_HUB_OFFLINE=1``); ``returncode``, ``stdout`` and ``stderr`` kept apart."""
    return subprocess.run(
        [sys.executable, "-c", CLI, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})},
        cwd=cwd,
        timeout=timeout,
    )


def logged(run: str | Path, names: Iterable[str] = ("loss", "grad_norm")) -> list[float]:
    """``names``' values of every training step a run logged (its ``metrics.jsonl`` lines with a
    ``loss``), one step after the other: ``[loss1, grad_norm1, loss2, ...]`` by default."""
    lines = (Path(run) / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    steps = [m for m in map(json.loads, lines) if "loss" in m]
    keys = tuple(names)
    return [float(m[k]) for m in steps for k in keys]


def assert_same_tensors(
    got: str | Path, want: str | Path, *, rtol: float = 1e-5, atol: float = 1e-6
) -> None:
    """The safetensors files ``got`` and ``want`` hold the same tensor names, each close."""
    import torch
    from safetensors.torch import load_file

    got_tensors, want_tensors = load_file(str(got)), load_file(str(want))
    assert sorted(got_tensors) == sorted(want_tensors), (sorted(got_tensors), sorted(want_tensors))
    for name, tensor in want_tensors.items():
        torch.testing.assert_close(got_tensors[name], tensor, rtol=rtol, atol=atol)
