"""Helpers for tests that install plugins for real: fake distributions and ``pip --target``.

* :class:`FakeSite` — a folder of ``*.dist-info`` directories and the modules they point at.
  Put on ``sys.path``/``PYTHONPATH`` it is seen by ``importlib.metadata`` like installed
  packages, so discovery can be tested against working, broken or conflicting plugins.
* :func:`install_into` — ``pip install --no-deps --target`` of package folders, and
  :func:`env_with` — an environment whose ``PYTHONPATH`` puts such a folder first.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterable
from pathlib import Path


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
