"""The import rule plugins live by, checked from source: a plugin imports the core (``martlet``)
and libraries, never another plugin's modules; the core imports no plugin.

A folder beside the plugins whose distribution registers no plugin (no ``martlet`` entry point
in its ``pyproject.toml``: a support library two plugins share, such as martlet-gptqmodel) is a
library: plugins may import it, and it imports no plugin.

Plugins meet through the core's records and interfaces (``registry.get(KIND, NAME)``,
:func:`martlet.load_model`, ...), so any of them can be replaced by another package. This
module reads the source with :mod:`ast` (every ``import``, at module level or inside a
function) and reports each import that crosses the line::

    from martlet_sdk.boundaries import import_violations, packages_under

    packages = packages_under("plugins")          # {"martlet_hf": Path(...), ...}
    libraries = packages_under("plugins", libraries=True)
    assert not import_violations(packages, core=Path("core/src/martlet"), libraries=libraries)
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = None


@dataclass(frozen=True, order=True)
class Violation:
    """``importer`` (a package) imports ``imported`` (another plugin's package) in ``file``."""

    importer: str
    imported: str
    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.importer} imports {self.imported}"


def is_library(folder: str | Path) -> bool:
    """Whether the distribution in ``folder`` registers no plugin: it has a ``pyproject.toml``
    that declares no ``martlet`` entry point (a folder without one counts as a plugin)."""
    pyproject = Path(folder) / "pyproject.toml"
    if not pyproject.is_file():
        return False
    text = pyproject.read_text(encoding="utf-8")
    if tomllib is None:
        return "[project.entry-points.martlet]" not in text
    return "martlet" not in tomllib.loads(text).get("project", {}).get("entry-points", {})


def packages_under(root: str | Path, *, libraries: bool = False) -> dict[str, Path]:
    """The import packages of the plugins under ``root`` (``root/*/src/PACKAGE``); with
    ``libraries``, those of the libraries there instead (:func:`is_library`)."""
    found = {}
    for src in sorted(Path(root).glob("*/src")):
        if is_library(src.parent) != libraries:
            continue
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
    packages: dict[str, Path],
    core: Path | None = None,
    core_name: str = "martlet",
    libraries: dict[str, Path] | None = None,
) -> list[Violation]:
    """Every import in ``packages`` (plugin package name -> its folder) of another of them,
    and every import of one of them in the ``core`` folder (when given) or in ``libraries``
    (library package name -> its folder; plugins may import those), sorted."""
    found = []
    sources = [(name, folder) for name, folder in packages.items()]
    sources += [(name, folder) for name, folder in (libraries or {}).items()]
    if core is not None:
        sources.append((core_name, core))
    for name, folder in sources:
        for file in sorted(Path(folder).rglob("*.py")):
            for module, line in _imports(file):
                if module in packages and module != name:
                    found.append(Violation(name, module, file.as_posix(), line))
    return sorted(found)
