"""`martlet plugin new` writes packages that install, list, run and pass their contracts."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from martlet.errors import ConfigError
from martlet.records import KINDS
from martlet_sdk.scaffold import new_plugin
from martlet_sdk.testing import env_with, install_into

pytestmark = pytest.mark.slow


def _martlet(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "import sys; from martlet.cli import main; sys.exit(main())", *args],
        capture_output=True,
        text=True,
        env=env,
    )


def test_a_generated_plugin_of_every_kind_installs_lists_and_passes_its_contract(tmp_path):
    out = tmp_path / "src"
    result = _martlet(
        "plugin",
        "new",
        "acme-hello",
        "--kind",
        "commands",
        "--output",
        str(out),
        env=dict(os.environ),
    )
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout
    roots = [out / "martlet-acme-hello"]
    for kind in KINDS:
        if kind != "commands":
            roots.append(new_plugin(f"acme-{kind.replace('_', '-')}", kind, out))
    site = tmp_path / "site"
    install_into(roots, site)
    env = env_with(site)

    listed = json.loads(_martlet("plugins", "--json", env=env).stdout)
    by_name = {p["name"]: p for p in listed}
    for root in roots:
        name = root.name.removeprefix("martlet-")
        assert by_name[name]["status"] == "ok", by_name[name]
        assert by_name[name]["distribution"] == root.name

    hello = _martlet("acme-hello", "--name", "Ada", "--times", "2", env=env)
    assert hello.returncode == 0, hello.stderr
    assert hello.stdout.splitlines() == ["hello, Ada", "hello, Ada"]

    tests = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:randomly",
            *[str(r / "tests") for r in roots],
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert tests.returncode == 0, tests.stdout[-4000:]
    summary = tests.stdout.strip().splitlines()[-1]
    assert "passed" in summary and "failed" not in summary and "error" not in summary


def test_new_refuses_a_bad_name_an_unknown_kind_and_an_existing_folder(tmp_path):
    with pytest.raises(ConfigError, match="invalid plugin name"):
        new_plugin("Bad_Name", "tuners", tmp_path)
    with pytest.raises(Exception, match="unknown kind 'tunerz'"):
        new_plugin("ok-name", "tunerz", tmp_path)
    new_plugin("ok-name", "tuners", tmp_path)
    with pytest.raises(ConfigError, match="already exists"):
        new_plugin("ok-name", "tuners", tmp_path)
    assert new_plugin("ok-name", "tuners", tmp_path, force=True).is_dir()


def test_new_reports_bad_input_through_the_cli(martlet_manager, martlet_cli, tmp_path):
    martlet_manager("sdk")
    result = martlet_cli("plugin", "new", "X!", "--output", str(tmp_path))
    assert result.exit_code != 0
    assert "invalid plugin name" in result.stderr and "Traceback" not in result.stderr
