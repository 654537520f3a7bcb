"""A vendor's accelerator is one small package: with `acme-device` installed (a CPU in disguise
that writes down every question it is asked), `--device acme-cpu` makes sft, infer and export
run through it — its availability, device, preferred dtype, seeding and first-import hook — and
`martlet doctor` reports it from its record."""

from __future__ import annotations

import json

import pytest
import yaml

PLUGIN = """
    from martlet import hookimpl
    from martlet.records import AcceleratorRecord

    MARTLET_API = 1

    @hookimpl
    def martlet_accelerators():
        yield AcceleratorRecord(
            name="acme-cpu", impl="acme_device_impl:AcmeCpu", requires=("torch",),
            summary="The host CPU, renamed: a vendor device for the tests.",
        )
"""

IMPL = """
    import json
    import os

    import torch


    def _note(method, *args):
        path = os.environ.get("ACME_DEVICE_LOG")
        if path:
            with open(path, "a") as f:
                f.write(json.dumps([method, *args]) + "\\n")


    class AcmeCpu:
        device_type = "cpu"

        def prepare(self):
            _note("prepare")

        def is_available(self):
            _note("is_available")
            return os.environ.get("ACME_DEVICE_AVAILABLE", "1") == "1"

        def device_count(self):
            _note("device_count")
            return 1

        def device(self, index=0):
            _note("device", index)
            return torch.device("cpu")

        def supported_dtypes(self):
            return ["float32"]

        def preferred_dtype(self):
            _note("preferred_dtype")
            return "float32"

        def memory_stats(self, index=0):
            return {"total": 1 << 30, "free": 1 << 29}

        def distributed_backend(self):
            _note("distributed_backend", os.environ.get("RANK"))
            return "gloo"

        def manual_seed(self, seed):
            _note("manual_seed", seed)
            torch.manual_seed(seed)

        def synchronize(self):
            pass
"""


@pytest.fixture(scope="module")
def acme_device(tmp_path_factory, fake_site_factory):
    site = fake_site_factory(tmp_path_factory.mktemp("acme-device"))
    site.dist(
        "acme-device",
        "2.0",
        entry_points={"acme-device": "acme_device"},
        modules={"acme_device": PLUGIN, "acme_device_impl": IMPL},
    )
    return site


def _asked(log):
    return [json.loads(line)[0] for line in log.read_text().splitlines()] if log.exists() else []


def test_sft_infer_and_export_run_through_the_vendor_accelerator(
    acme_device, martlet, tiny_model_dir, tmp_path
):
    out, log = tmp_path / "run", tmp_path / "asked.jsonl"
    env = {"ACME_DEVICE_LOG": str(log)}
    trained = martlet(
        "sft", "--model", str(tiny_model_dir), "--dataset", "sample-sft#8",
        "--device", "acme-cpu", "--seed", "7",
        "--max-steps", "2", "--max-length", "64", "--output-dir", str(out),
        "--disable-progress-bar",
        site=acme_device, env=env,
    )  # fmt: skip
    assert trained.rc == 0, trained
    asked = _asked(log)
    for question in ("prepare", "is_available", "preferred_dtype", "manual_seed"):
        assert question in asked, (question, asked)
    assert asked.count("prepare") == 1  # once per process, as the interface says
    assert ["manual_seed", 7] in [json.loads(line) for line in log.read_text().splitlines()]
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["device"] == "acme-cpu" and config["mixed_precision"] == "no"  # its float32

    log.unlink()
    answered = martlet(
        "infer", "--adapters", str(out), "--device", "acme-cpu", "--query", "hi",
        "--max-new-tokens", "2", site=acme_device, env=env,
    )  # fmt: skip
    assert answered.rc == 0, answered
    assert {"prepare", "is_available", "preferred_dtype"} <= set(_asked(log))

    log.unlink()
    exported = martlet(
        "export", "--adapters", str(out), "--merge-lora", "--device", "acme-cpu",
        "--output-dir", str(tmp_path / "merged"), site=acme_device, env=env,
    )  # fmt: skip
    assert exported.rc == 0, exported
    assert {"prepare", "is_available"} <= set(_asked(log))
    assert (tmp_path / "merged" / "config.json").is_file()


def test_an_unavailable_vendor_device_is_an_error_or_falls_back(acme_device, martlet, tmp_path):
    env = {"ACME_DEVICE_AVAILABLE": "0"}
    common = ("sft", "--model", str(tmp_path / "none"), "--dataset", "sample-sft#2")
    refused = martlet(
        *common, "--device", "acme-cpu", "--fallback-on-cpu", "false", site=acme_device, env=env
    )
    assert refused.rc != 0 and "Traceback" not in refused.err
    assert "--device acme-cpu cannot be used" in refused.err
    assert "no acme-cpu device is available on this machine" in refused.err
    wrong_index = martlet(*common, "--device", "acme-cpu:x", site=acme_device)
    assert wrong_index.rc != 0 and "'x' is not a device index" in wrong_index.err


def test_doctor_reports_it_from_its_record(acme_device, martlet):
    report = martlet("doctor", "--json", site=acme_device)
    assert report.rc == 0, report
    entry = next(a for a in report.json["accelerators"] if a["name"] == "acme-cpu")
    assert entry["available"] is True and entry["preferred_dtype"] == "float32"
    assert entry["dtypes"] == ["float32"] and entry["plugin"]
    assert entry["distributed_backend"] == "gloo"


def test_a_run_on_two_processes_takes_its_backend_from_the_record(
    acme_device, martlet, tiny_model_dir, tmp_path
):
    log = tmp_path / "asked.jsonl"
    trained = martlet(
        "sft", "--model", str(tiny_model_dir), "--dataset", "sample-sft#8",
        "--device", "acme-cpu", "--max-steps", "1", "--max-length", "64",
        "--nproc-per-node", "2", "--output-dir", str(tmp_path / "run"),
        "--disable-progress-bar", site=acme_device, env={"ACME_DEVICE_LOG": str(log)},
    )  # fmt: skip
    assert trained.rc == 0, trained
    asked = [json.loads(line) for line in log.read_text().splitlines()]
    ranks = {entry[1] for entry in asked if entry[0] == "distributed_backend"}
    assert ranks == {"0", "1"}  # each rank's process group asked the vendor's record
