"""docs/plugins.md's "Adding a new hardware backend" works when followed literally: its files,
extracted from the page alone, are martlet-npu's own (so the two cannot drift), install outside
the repository, are listed by `martlet doctor`, and — on a stand-in torch_npu — make an
available device with backend hccl whose contract test passes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from martlet_sdk.testing import CLI, FakeSite, env_with, install_into

REPO = Path(__file__).resolve().parents[1]
GUIDE = REPO / "docs" / "plugins.md"
PACKAGE = REPO / "plugins" / "npu"
SECTION = "## Adding a new hardware backend"

#: what the doc's "Testing without the hardware" describes: the import of torch_npu made
#: harmless — the npu device type and a torch.npu reporting two 64 GiB NPUs with bfloat16
STAND_IN = """
import types

import torch

npu = types.ModuleType("torch_npu.npu")
npu.is_available = lambda: True
npu.device_count = lambda: 2
npu.is_bf16_supported = lambda: True
npu.mem_get_info = lambda device=None: (24 << 30, 64 << 30)
npu.memory_allocated = lambda device=None: 0
npu.manual_seed_all = lambda seed: None
npu._is_in_bad_fork = lambda: False
npu.synchronize = lambda device=None: None
npu.set_device = lambda index: None
torch.utils.rename_privateuse1_backend("npu")
torch.npu = npu
"""

#: the contract's checks that compute on the device: the stand-in has no kernels
NEEDS_KERNELS = (
    "not device_holds_tensors and not every_supported_dtype_computes "
    "and not manual_seed_makes_sampling_repeatable"
)


def _section_files() -> dict[str, str]:
    text = GUIDE.read_text(encoding="utf-8")
    assert SECTION in text, f"docs/plugins.md lost its section {SECTION!r}"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    pattern = re.compile(r"<!-- file: (\S+) -->\n```\w*\n(.*?)\n```", re.S)
    return {path: body + "\n" for path, body in pattern.findall(section)}


def test_the_tutorial_files_are_martlet_npu_s_files():
    files = _section_files()
    assert {
        "martlet-npu/pyproject.toml",
        "martlet-npu/src/martlet_npu/plugin.py",
        "martlet-npu/src/martlet_npu/accelerator.py",
        "martlet-npu/tests/test_contract.py",
    } <= set(files)
    for rel, body in files.items():
        ours = PACKAGE / rel.split("/", 1)[1]
        assert ours.is_file(), f"the tutorial shows {rel}, which plugins/npu does not have"
        assert body == ours.read_text(encoding="utf-8"), (
            f"docs/plugins.md's {rel} differs from plugins/npu/{rel.split('/', 1)[1]}: "
            "change both together"
        )
    shipped = {f"martlet-npu/{p.relative_to(PACKAGE)}" for p in (PACKAGE / "src").rglob("*.py")}
    assert shipped <= set(files), f"the tutorial leaves out {sorted(shipped - set(files))}"


def _run(args, env, cwd=None):
    return subprocess.run(args, capture_output=True, text=True, env=env, cwd=cwd, timeout=300)


def _npu_line(stdout: str) -> list[str]:
    return next(line.split() for line in stdout.splitlines() if line.strip().startswith("npu "))


@pytest.mark.slow
def test_the_tutorial_works_when_followed_literally(tmp_path):
    for rel, body in _section_files().items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body, encoding="utf-8")
    site = install_into([tmp_path / "martlet-npu"], tmp_path / "site")
    env = {**env_with(site), "HF_HUB_OFFLINE": "1"}
    cli = [sys.executable, "-c", CLI]

    where = _run([sys.executable, "-c", "import martlet_npu.plugin as m; print(m.__file__)"], env)
    assert Path(where.stdout.strip()).is_relative_to(site), where  # the page's copy, not ours

    # listed everywhere: without torch_npu, unavailable and saying why
    doctor = _run([*cli, "doctor"], env)
    assert doctor.returncode == 0, doctor.stderr
    try:
        metadata.version("torch-npu")
    except metadata.PackageNotFoundError:
        assert _npu_line(doctor.stdout) == ["npu", "no", "needs", "torch-npu"]
    tests = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "martlet-npu"],
                 env, cwd=tmp_path)  # fmt: skip
    assert tests.returncode == 0, tests.stdout[-3000:]

    # on a stand-in torch_npu: available, hccl, and the contract passes
    fake = FakeSite(tmp_path / "fake")
    fake.dist("torch-npu", "2.5.1", entry_points={}, modules={"torch_npu": STAND_IN})
    env = env_with(fake.root) | {"PYTHONPATH": f"{fake.root}:{env['PYTHONPATH']}"}
    doctor = _run([*cli, "doctor"], env)
    assert _npu_line(doctor.stdout) == [
        "npu", "yes", "devices=2", "dtypes=float32,bfloat16,float16", "preferred=bfloat16",
        "memory=64.0", "GiB", "free=24.0", "GiB", "backend=hccl",
    ], doctor.stdout + doctor.stderr  # fmt: skip
    report = json.loads(_run([*cli, "doctor", "--json"], env).stdout)
    entry = next(a for a in report["accelerators"] if a["name"] == "npu")
    assert entry["distributed_backend"] == "hccl" and entry["plugin"] == "martlet-npu"
    tests = _run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
         "-k", NEEDS_KERNELS, "martlet-npu"],
        env,
        cwd=tmp_path,
    )  # fmt: skip
    assert tests.returncode == 0, tests.stdout[-3000:]
    assert "needs torch-npu" not in tests.stdout  # the implementation was tested this time
    assert re.search(r"\d+ passed", tests.stdout) and "failed" not in tests.stdout
