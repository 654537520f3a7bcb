"""Plugins are replaceable: with martlet-hf and martlet-data disabled, a third party's model
loader, template and dataset source (`acme-parts`, tests/third_party_parts.py) take their places and
`martlet sft` trains and `martlet infer` answers; with no replacement, the error names what is
missing and the package that provides it."""

from __future__ import annotations

import json

import yaml

OFF = {"MARTLET_DISABLE_PLUGINS": "martlet-hf,martlet-data"}


def test_sft_and_infer_run_with_another_plugins_loader_template_and_source(
    acme_parts, martlet, tiny_model_dir, tmp_path
):
    out = tmp_path / "run"
    trained = martlet(
        "sft",
        "--model", str(tiny_model_dir), "--model-loader", "acme-loader",
        "--template", "acme-chat",
        "--dataset", "acme-rows:6",  # read by acme's source, the only one installed
        "--max-steps", "2", "--logging-steps", "1", "--max-length", "64",
        "--output-dir", str(out), "--disable-progress-bar",
        site=acme_parts, env=OFF,
    )  # fmt: skip
    assert trained.rc == 0, trained
    assert "acme-loader: note=none" in trained.out and "acme-rows: answer=yes" in trained.out
    plugins = {p["name"]: p for p in json.loads((out / "plugins.lock.json").read_text())}
    assert plugins["hf"]["status"] == "blocked" and plugins["data"]["status"] == "blocked"
    steps = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in steps if "loss" in m] == [1, 2]
    assert yaml.safe_load((out / "config.yaml").read_text())["template"]["name"] == "acme-chat"
    answered = martlet(
        "infer", "--adapters", str(out), "--query", "hello", "--max-new-tokens", "3",
        site=acme_parts, env=OFF,
    )  # fmt: skip
    assert answered.rc == 0, answered
    # what prints while the model loads goes to stderr (infer keeps stdout for the answers)
    assert "acme-loader: note=none" in answered.err and "acme-chat: prefix=>" in answered.err


def test_without_a_replacement_the_error_names_what_provides_it(martlet, tiny_model_dir, tmp_path):
    data = tmp_path / "rows.jsonl"
    data.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n')
    common = ("sft", "--model", str(tiny_model_dir), "--output-dir", str(tmp_path / "out"))
    no_data = martlet(
        *common, "--dataset", str(data), env={"MARTLET_DISABLE_PLUGINS": "martlet-data"}
    )
    assert no_data.rc != 0 and "Traceback" not in no_data.err
    assert f"no dataset source can read {str(data)!r}" in no_data.err, no_data
    assert "martlet-data" in no_data.err and "MARTLET_DISABLE_PLUGINS" in no_data.err
    no_loader = martlet(
        *common, "--dataset", "sample-sft#4", env={"MARTLET_DISABLE_PLUGINS": "martlet-hf"}
    )
    assert no_loader.rc != 0 and "Traceback" not in no_loader.err
    assert "no model loader can read" in no_loader.err, no_loader
    assert "martlet-hf" in no_loader.err and "MARTLET_DISABLE_PLUGINS" in no_loader.err
