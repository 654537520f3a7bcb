"""`martlet plugin new` writes packages that install, list, run and pass their contracts."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import subprocess
import sys

import pytest
from martlet.errors import ConfigError
from martlet.records import KINDS
from martlet_sdk.scaffold import module_name, new_plugin
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
            "-rA",
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
    # the scaffolds that declare options show them reaching a command that selects the record
    for name in ("acme-callbacks", "acme-losses", "acme-quantizers", "acme-tuners"):
        test = f"test_{module_name(name).removeprefix('martlet_')}.py"
        check = "test_declared_options_reach_a_command_that_selects_the_record"
        assert re.search(rf"^PASSED \S*{test}::\S+::{check}$", tests.stdout, re.M), name
    # and from the real CLI: the callback's option is listed and refused without it
    shown = _martlet("sft", "--report-to", "acme-callbacks", "--help", env=env)
    assert "--json-stream stderr|stdout" in shown.stdout, shown.stdout[-2000:]
    refused = _martlet("sft", "--model", "m", "--json-stream", "stdout", "--print-config", env=env)
    assert refused.returncode != 0 and "pass --report-to acme-callbacks" in refused.stderr


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


def test_every_file_a_generated_readme_names_is_generated(tmp_path):
    for kind in KINDS:
        root = new_plugin(f"acme-{kind.replace('_', '-')}", kind, tmp_path)
        readme = (root / "README.md").read_text(encoding="utf-8")
        named = set(re.findall(r"`(src/[^`\s]+)`", readme))
        assert named, f"{kind}: the README names no file"
        for rel in sorted(named):
            assert (root / rel).is_file(), f"{kind}: the README names {rel}, not generated"


def test_the_dataset_scaffold_ships_its_data_file_as_package_data(tmp_path):
    root = new_plugin("acme-rows", "datasets", tmp_path)
    module = "martlet_acme_rows"
    plugin = (root / "src" / module / "plugin.py").read_text(encoding="utf-8")
    package, relative = re.search(r'path="([\w.]+):([^"]+)"', plugin).groups()
    assert package == module
    assert (root / "src" / module / relative).is_file(), "the record's file is not generated"
    pyproject = (root / "pyproject.toml").read_text(encoding="utf-8")
    section = pyproject.split("[tool.setuptools.package-data]\n")[1].split("\n[")[0]
    globs = re.findall(r'"([^"]+)"', re.search(rf"^{module} = \[(.*)\]$", section, re.M)[1])
    assert any(fnmatch.fnmatch(relative, g) for g in globs), (relative, globs)
    assert re.search(r'impl="martlet_acme_rows\.impl:(\w+)"', plugin), "the preprocessor"
    readme = (root / "README.md").read_text(encoding="utf-8")
    assert '"PACKAGE:RELATIVE/PATH"' in readme and "[tool.setuptools.package-data]" in readme


def test_generated_dataset_and_loss_plugins_pass_the_behaviour_checks_from_a_wheel(tmp_path):
    """The dataset's rows load from the installed wheel, the loss returns (sum, count, metrics);
    a dataset whose pyproject lists no package-data fails its contract, saying why."""
    out = tmp_path / "src"
    roots = [new_plugin("acme-rows", "datasets", out), new_plugin("acme-ce", "losses", out)]
    unshipped = new_plugin("acme-unshipped", "datasets", out)
    pyproject = unshipped / "pyproject.toml"
    text = pyproject.read_text(encoding="utf-8")
    pyproject.write_text(text.split("\n[tool.setuptools.package-data]")[0], encoding="utf-8")
    site = install_into([*roots, unshipped], tmp_path / "site")
    assert (site / "martlet_acme_rows" / "data" / "acme-rows.jsonl").is_file()
    env = env_with(site)

    rows = subprocess.run(
        [sys.executable, "-c", "import json, martlet; print(json.dumps(martlet.load_dataset("
         "'acme-rows')[0]))"],
        capture_output=True, text=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert rows.returncode == 0, rows.stderr
    assert json.loads(rows.stdout) == {
        "messages": [
            {"role": "user", "content": "What is the capital of France?"},
            {"role": "assistant", "content": "Paris."},
        ],
        "topic": "geography",
    }

    def pytest_run(*dirs):
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider",
             "-p", "no:randomly", *[str(d / "tests") for d in dirs]],
            capture_output=True, text=True, env=env, cwd=tmp_path,
        )  # fmt: skip

    tests = pytest_run(*roots)
    assert tests.returncode == 0, tests.stdout[-4000:]
    for check in (
        "test_packaged_file_is_installed",
        "test_rows_load_through_the_record_and_are_canonical",
        "test_batch_loss_returns_a_finite_differentiable_sum[padded]",
        "test_batch_loss_returns_a_finite_differentiable_sum[padding-free]",
        "test_batch_loss_is_a_sum_not_a_mean",
    ):
        assert re.search(rf"^PASSED \S+::{re.escape(check)}$", tests.stdout, re.M), check

    failing = pytest_run(unshipped)
    assert failing.returncode != 0, failing.stdout[-4000:]
    assert "FAILED" in failing.stdout and "test_packaged_file_is_installed" in failing.stdout
    assert "ship it in the wheel" in failing.stdout and "package-data" in failing.stdout
