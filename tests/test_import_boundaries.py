"""Plugins meet only through the core: no plugin imports another plugin's modules and the core
imports no plugin; a library beside them (no `martlet` entry point: martlet-gptqmodel) may be
imported by plugins and imports none (checked from the source, `martlet_sdk.boundaries`)."""

from __future__ import annotations

from pathlib import Path

from martlet_sdk.boundaries import import_violations, packages_under

REPO = Path(__file__).resolve().parents[1]


def _found() -> set[tuple[str, str, str]]:
    packages = packages_under(REPO / "plugins")
    assert {"martlet_hf", "martlet_data", "martlet_train", "martlet_peft"} <= set(packages)
    libraries = packages_under(REPO / "plugins", libraries=True)
    assert "martlet_gptqmodel" in libraries and "martlet_gptqmodel" not in packages
    found = import_violations(packages, core=REPO / "core" / "src" / "martlet", libraries=libraries)
    return {(v.importer, v.imported, str(Path(v.file).relative_to(REPO))) for v in found}


def test_no_plugin_imports_another_and_the_core_imports_none():
    found = sorted(_found())
    assert not found, (
        "imports across plugins (ask the registry, or the core, instead):\n"
        + "\n".join(map(str, found))
    )


def _tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_check_catches_a_deliberate_violation(tmp_path):
    """A plugin importing another (at module level or inside a function) and a core module
    importing a plugin are reported with file and line; imports of the core and of
    libraries, and a package's imports of itself, are not."""
    _tree(
        tmp_path,
        {
            "plugins/a/src/acme_a/__init__.py": "",
            "plugins/a/src/acme_a/plugin.py": "import martlet\nfrom acme_a import impl\n",
            "plugins/a/src/acme_a/impl.py": (
                "import torch\n\ndef f():\n    from acme_b.x import y\n"
            ),
            "plugins/b/src/acme_b/__init__.py": "",
            "plugins/b/src/acme_b/x.py": "import acme_a.impl\n",
            "core/martlet/api.py": "from acme_b import x\nfrom . import errors\n",
        },
    )
    packages = packages_under(tmp_path / "plugins")
    assert set(packages) == {"acme_a", "acme_b"}
    found = import_violations(packages, core=tmp_path / "core" / "martlet")
    assert [(v.importer, v.imported, Path(v.file).name, v.line) for v in found] == [
        ("acme_a", "acme_b", "impl.py", 4),
        ("acme_b", "acme_a", "x.py", 1),
        ("martlet", "acme_b", "api.py", 1),
    ]
    assert str(found[0]).endswith("impl.py:4: acme_a imports acme_b")


def test_a_library_may_be_imported_by_plugins_and_imports_none(tmp_path):
    """A folder whose pyproject.toml declares no `martlet` entry point is a library: a
    plugin importing it is fine; the library importing a plugin is reported."""
    plugin_toml = (
        '[project]\nname = "acme-a"\n\n[project.entry-points.martlet]\na = "acme_a.plugin"\n'
    )
    _tree(
        tmp_path,
        {
            "plugins/a/pyproject.toml": plugin_toml,
            "plugins/a/src/acme_a/__init__.py": "",
            "plugins/a/src/acme_a/impl.py": "from acme_lib import shared\n",
            "plugins/lib/pyproject.toml": '[project]\nname = "acme-lib"\n',
            "plugins/lib/src/acme_lib/__init__.py": "",
            "plugins/lib/src/acme_lib/shared.py": "import os\n\ndef f():\n    import acme_a\n",
        },
    )
    packages = packages_under(tmp_path / "plugins")
    libraries = packages_under(tmp_path / "plugins", libraries=True)
    assert (set(packages), set(libraries)) == ({"acme_a"}, {"acme_lib"})
    found = import_violations(packages, libraries=libraries)
    assert [(v.importer, v.imported, Path(v.file).name, v.line) for v in found] == [
        ("acme_lib", "acme_a", "shared.py", 4),
    ]
