"""Fixtures for the cross-package tests: fake installed distributions and a CLI runner.

A :class:`~martlet_sdk.testing.FakeSite` is a folder of ``*.dist-info`` directories
(``METADATA`` and ``entry_points.txt``) plus the plugin modules they point at. Put on
``PYTHONPATH`` it is seen by
``importlib.metadata`` exactly like installed packages, ahead of the real site-packages, so a
fake distribution shadows an installed one of the same name. :func:`martlet` runs the real CLI
in a fresh interpreter with such a site.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from martlet_sdk.testing import FakeSite

CLI = "import sys; from martlet.cli import main; sys.exit(main())"


@dataclass
class Result:
    """What one run of the CLI did."""

    args: tuple[str, ...]
    rc: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        return json.loads(self.out)

    @property
    def warnings(self) -> list[str]:
        """The ``martlet: warning:`` lines of stderr, without the prefix."""
        prefix = "martlet: warning: "
        return [line[len(prefix) :] for line in self.err.splitlines() if line.startswith(prefix)]

    def plugin(self, name: str) -> dict[str, Any]:
        """The ``plugins --json`` row of plugin ``name``."""
        rows = [row for row in self.json if row["name"] == name]
        assert len(rows) == 1, (name, [row["name"] for row in self.json])
        return rows[0]

    def __repr__(self) -> str:  # shown by pytest when an assertion fails
        return f"martlet {' '.join(self.args)} -> {self.rc}\n--- out\n{self.out}--- err\n{self.err}"


def run_martlet(
    *args: str,
    site: FakeSite | Path | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    script: bool = False,
) -> Result:
    """Run ``martlet ARGS`` in a fresh interpreter.

    ``site`` goes first on ``PYTHONPATH``; ``env`` adds to a copy of the environment from which
    every ``MARTLET_*`` variable was removed. ``script`` runs the installed console script
    instead of ``python -c``.
    """
    environ = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MARTLET_") and k not in ("PYTHONWARNINGS", "PYTHONSTARTUP")
    }
    paths = [str(site.root if isinstance(site, FakeSite) else site)] if site else []
    if environ.get("PYTHONPATH"):
        paths.append(environ["PYTHONPATH"])
    environ["PYTHONPATH"] = os.pathsep.join(paths)
    environ.setdefault("COLUMNS", "100")
    environ.update(env or {})
    if script:
        command = [str(Path(sys.executable).parent / "martlet"), *args]
    else:
        command = [sys.executable, "-c", CLI, *args]
    proc = subprocess.run(
        command, capture_output=True, text=True, env=environ, cwd=cwd, timeout=120
    )
    return Result(tuple(args), proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def site(tmp_path: Path) -> FakeSite:
    """An empty fake site for this test."""
    return FakeSite(tmp_path / "site")


@pytest.fixture
def martlet():
    """``martlet(*args, site=..., env=..., cwd=...)``: run the CLI in a subprocess."""
    return run_martlet


@pytest.fixture(scope="session")
def fake_site_factory():
    """The :class:`FakeSite` class, for module-scoped sites."""
    return FakeSite


@pytest.fixture(scope="session")
def acme_parts(tmp_path_factory) -> FakeSite:
    """A fake site with the third-party ``acme-parts`` plugin (``tests/third_party_parts.py``):
    a model loader, a template, a dataset source and a callback, each with its own option."""
    import importlib.util

    path = Path(__file__).with_name("third_party_parts.py")
    spec = importlib.util.spec_from_file_location("third_party_parts", path)
    parts = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(parts)
    site = FakeSite(tmp_path_factory.mktemp("acme-parts"))
    parts.install(site)
    return site
