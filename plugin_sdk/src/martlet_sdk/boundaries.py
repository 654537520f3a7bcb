"""The import rule plugins live by, checked from source: a plugin imports the core (``martlet``)
and libraries, never another plugin's modules; the core imports no plugin.

Plugins meet through the core's records and interfaces (``registry.get(KIND, NAME)``,
:func:`martlet.load_model`, ...), so any of them can be replaced by another package. This
module reads the source with :mod:`ast` (every ``import``, at module level or inside a
function) and reports each import that crosses the line::

    from martlet_sdk.boundaries import import_violations, packages_under

    packages = packages_under("plugins")          # {"martlet_hf": Path(...), ...}
    assert not import_violations(packages, core=Path("core/src/martlet"))
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, order=True)
class Violation:
    """``importer`` (a package) imports ``imported`` (another plugin's package) in ``file``."""

    importer: str
    imported: str
    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.importer} imports {self.imported}"


def packages_under(root: str | Path) -> dict[str, Path]:
    """The import packages of the plugins under ``root`` (``root/*/src/PACKAGE``)."""
    found = {}
    for src in sorted(Path(root).glob("*/src")):
        for package in sorted(src.iterdir()):
            if (package / "__init__.py").is_file() or (package / "plugin.py").is_file():
                found[package.name] = package
    return found


def _imports(path: Path) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name.split(".")[0], node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.append((node.module.split(".")[0], node.lineno))
    return out


def import_violations(
    packages: dict[str, Path], core: Path | None = None, core_name: str = "martlet"
) -> list[Violation]:
    """Every import in ``packages`` (plugin package name -> its folder) of another of them,
    and every import of one of them in the ``core`` folder (when given), sorted."""
    found = []
    sources = [(name, folder) for name, folder in packages.items()]
    if core is not None:
        sources.append((core_name, core))
    for name, folder in sources:
        for file in sorted(Path(folder).rglob("*.py")):
            for module, line in _imports(file):
                if module in packages and module != name:
                    found.append(Violation(name, module, file.as_posix(), line))
    return sorted(found)
