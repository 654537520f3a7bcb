"""martlet-eetq on a machine without a GPU: the record lists without any EETQ package, the CLI
refuses it before anything loads, and a missing kernel source is explained. What needs a GPU
is in tests/gpu/eetq.sh."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from martlet_sdk.contracts import QuantizerContract

PLUGINS = ("eetq", "train", "hf", "data", "peft", "accel")


class TestEetqQuantizer(QuantizerContract):
    @pytest.fixture
    def plugin(self):
        return "eetq"

    @pytest.fixture
    def record_name(self):
        return "eetq"


@pytest.fixture
def cli(martlet_manager, martlet_cli):
    martlet_manager(*PLUGINS)
    return martlet_cli


@pytest.fixture
def no_cuda():
    import torch

    if torch.cuda.is_available():
        pytest.skip("checks what happens without a CUDA GPU")


def test_listed_without_any_eetq_package(cli):
    from martlet.registry import records

    result = cli("plugins", "--kind", "quantizers", "--json")
    assert result.exit_code == 0, result.output
    plugin = next(p for p in json.loads(result.stdout) if p["name"] == "eetq")
    assert plugin["status"] == "ok" and plugin["records"] == {"quantizers": ["eetq"]}
    record = next(r for r in records("quantizers") if r.name == "eetq")
    assert record.needs_cuda and record.requires == () and record.bits == (8,)
    assert record.stages == ("load",) and not record.missing_requirements()


def test_sft_fails_fast_without_a_gpu(no_cuda, tiny_model_dir, tmp_path):
    """Through the installed `martlet` command, as users run it."""
    out = tmp_path / "run"
    start = time.perf_counter()
    result = subprocess.run(
        [str(Path(sys.executable).parent / "martlet"), "sft", "--model", str(tiny_model_dir)]
        + ["--quant-method", "eetq", "--dataset", "sample-sft#4", "--output-dir", str(out)],
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    assert result.returncode == 1, result.stdout + result.stderr
    assert "the eetq quantizer needs a CUDA GPU" in result.stderr
    assert "pick a quantizer that runs here" in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()  # refused before the run directory or the model
    assert seconds < 30, f"took {seconds:.0f}s to refuse"


def test_infer_refuses_it_too(no_cuda, martlet_manager, martlet_cli, tiny_model_dir):
    martlet_manager(*PLUGINS, "serve", "engine-pt")
    result = martlet_cli(
        "infer", "--model", str(tiny_model_dir), "--quant-method", "eetq", "--query", "hi"
    )
    assert result.exit_code == 1
    assert "needs a CUDA GPU" in result.output


def test_other_widths_are_refused_first(cli, tiny_model_dir, tmp_path):
    result = cli(
        "sft", "--model", str(tiny_model_dir), "--quant-method", "eetq", "--quant-bits", "4",
        "--dataset", "sample-sft#4", "--output-dir", str(tmp_path / "run"),
    )  # fmt: skip
    assert result.exit_code == 2
    assert "eetq cannot quantize to 4 bits" in result.output
    assert "supports 8 bits" in result.output


def test_quantize_on_load_itself_refuses_a_cpu_only_machine(no_cuda):
    from martlet.errors import MartletError
    from martlet_eetq.quantizer import EetqQuantizer

    with pytest.raises(MartletError, match="needs a CUDA GPU"):
        EetqQuantizer().quantize_on_load(8)
    with pytest.raises(MartletError, match="cannot quantize to 4 bits"):
        EetqQuantizer().quantize_on_load(4)
    with pytest.raises(MartletError, match="takes no option"):
        EetqQuantizer().quantize_on_load(8, group_size=64)


def test_where_the_kernels_come_from_and_what_is_missing():
    import importlib.util

    import transformers
    from martlet.errors import MissingDependencyError
    from martlet_eetq.quantizer import BUILD, kernel_source, missing

    source = kernel_source()
    if int(transformers.__version__.split(".")[0]) >= 5:
        assert source == "hub"  # transformers 5 fetches kernels-community/quantization-eetq
        assert missing("hub") is None  # `kernels` is one of transformers 5's requirements
    # the eetq package (transformers 4's kernels) builds only from source
    if importlib.util.find_spec("eetq") is None:
        error = missing("eetq")
        assert isinstance(error, MissingDependencyError)
        assert BUILD in str(error)
        assert BUILD == (
            "git clone https://github.com/NetEase-FuXi/EETQ.git && cd EETQ && "
            "git submodule update --init --recursive && pip install ."
        )


def test_offline_without_the_hub_kernel_is_explained(tmp_path):
    import os

    code = (
        "from martlet_eetq.quantizer import missing; e = missing('hub'); "
        "print('none' if e is None else e.message())"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path)}

    def run() -> str:
        return subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
        ).stdout

    out = run()
    assert "kernels-community/quantization-eetq" in out and "HF_HUB_OFFLINE" in out
    (tmp_path / "models--kernels-community--quantization-eetq" / "snapshots").mkdir(parents=True)
    assert run().strip() == "none"


def test_plugin_and_quantizer_modules_stay_light():
    code = "import sys, martlet_eetq.plugin, martlet_eetq.quantizer; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
