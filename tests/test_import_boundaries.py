"""Plugins meet only through the core: no plugin imports another plugin's modules and the core
imports no plugin (checked from the source, `martlet_sdk.boundaries`)."""

from __future__ import annotations

from pathlib import Path

from martlet_sdk.boundaries import import_violations, packages_under

REPO = Path(__file__).resolve().parents[1]


def _found() -> set[tuple[str, str, str]]:
    packages = packages_under(REPO / "plugins")
    assert {"martlet_hf", "martlet_data", "martlet_train", "martlet_peft"} <= set(packages)
    found = import_violations(packages, core=REPO / "core" / "src" / "martlet")
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
