"""docs/plugins.md is true: its generated reference matches the code, and its worked example,
extracted from the page alone, installs outside the repository, is listed and passes its
contract tests."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from martlet_sdk import hookdoc
from martlet_sdk.testing import env_with, install_into

REPO = Path(__file__).resolve().parents[1]
GUIDE = REPO / "docs" / "plugins.md"


def test_generated_sections_are_up_to_date():
    text = GUIDE.read_text(encoding="utf-8")
    assert hookdoc.render(text) == text, (
        "docs/plugins.md is out of step with the code: run "
        "`python -m martlet_sdk.hookdoc docs/plugins.md`"
    )


def test_every_hook_is_documented_with_its_exact_signature():
    text = GUIDE.read_text(encoding="utf-8")
    hooks = hookdoc.hook_functions()
    assert len(hooks) == 18  # 16 registration hooks + 2 lifecycle hooks
    for func in hooks:
        assert f"### `{func.__name__}`" in text
        assert hookdoc.signature(func) in text, hookdoc.signature(func)


def _example_files(text: str) -> dict[str, str]:
    pattern = re.compile(r"<!-- file: (\S+) -->\n```\w*\n(.*?)\n```", re.S)
    return {path: body + "\n" for path, body in pattern.findall(text)}


@pytest.mark.slow
def test_the_worked_example_works_from_the_page_alone(tmp_path):
    files = _example_files(GUIDE.read_text(encoding="utf-8"))
    assert "acme-greet/pyproject.toml" in files and "acme-greet/tests/test_greet.py" in files
    for rel, body in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body, encoding="utf-8")
    site = tmp_path / "site"
    install_into([tmp_path / "acme-greet"], site)
    env = env_with(site)
    cli = [sys.executable, "-c", "import sys; from martlet.cli import main; sys.exit(main())"]

    listed = json.loads(
        subprocess.run(
            [*cli, "plugins", "--json"], capture_output=True, text=True, env=env, check=True
        ).stdout
    )
    greet = next(p for p in listed if p["name"] == "greet")
    assert greet["status"] == "ok" and greet["distribution"] == "acme-greet"
    assert greet["records"] == {"callbacks": ["jsonl-stdout"], "commands": ["greet"]}

    run = subprocess.run([*cli, "greet", "--name", "Ada"], capture_output=True, text=True, env=env)
    assert run.stdout == "hello, Ada\n", run.stderr

    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "acme-greet"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert tests.returncode == 0, tests.stdout[-3000:]
    assert re.search(r"\d+ passed", tests.stdout) and "failed" not in tests.stdout
