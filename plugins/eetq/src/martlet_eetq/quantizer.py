"""EETQ through transformers' ``EetqConfig``: every ``nn.Linear`` but the output head holds int8
weights with a float16 scale per output channel and multiplies fp16 activations in EETQ's CUDA
kernel (``w8_a16_gemm``); no calibration. CUDA GPUs only (the record's ``needs_cuda``: the core
refuses it elsewhere before anything loads).

Where the kernels come from depends on the installed transformers (:func:`kernel_source`):

- ``hub`` (transformers 5): its EETQ integration calls ``kernels.get_kernel(
  "kernels-community/quantization-eetq")``: the ``kernels`` package (a transformers
  requirement) fetches a prebuilt kernel from the Hugging Face Hub on the first load and keeps
  it in the Hub cache. The ``eetq`` package is not used.
- ``eetq`` (transformers 4): it imports the ``eetq`` package, which has no PyPI release and is
  built from source on a machine with CUDA (:data:`BUILD`).

Nothing heavy is imported at module level.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from martlet.errors import ConfigError, MartletError, MissingDependencyError

REPO = "https://github.com/NetEase-FuXi/EETQ"
#: how to build the eetq package (no PyPI release), on a machine with CUDA and nvcc
BUILD = (
    f"git clone {REPO}.git && cd EETQ && git submodule update --init --recursive && pip install ."
)
#: the prebuilt kernel transformers 5 fetches through the `kernels` package
HUB_KERNEL = "kernels-community/quantization-eetq"
#: fetches it into the Hugging Face cache (where the Hub is reachable)
FETCH = f"python -c \"from kernels import get_kernel; get_kernel('{HUB_KERNEL}', version=1)\""


def kernel_source() -> str:
    """``"hub"`` when the installed transformers runs EETQ through the ``kernels`` package
    (:data:`HUB_KERNEL`), ``"eetq"`` when it imports the ``eetq`` package. Read from its source
    file, without importing it."""
    spec = importlib.util.find_spec("transformers.integrations.eetq")
    if spec is None or not spec.origin:
        return "eetq"
    try:
        text = Path(spec.origin).read_text(encoding="utf-8")
    except OSError:
        return "eetq"
    return "hub" if HUB_KERNEL in text else "eetq"


def missing(source: str) -> MartletError | None:
    """What stops EETQ's kernels from loading through ``source`` (:func:`kernel_source`) on
    this machine, GPU aside, as the error to raise; None when nothing does."""
    if source == "hub":
        if importlib.util.find_spec("kernels") is None:
            return MissingDependencyError(
                "the eetq quantizer needs the kernels package, which is not installed",
                why=f"this transformers runs EETQ with the prebuilt kernel {HUB_KERNEL}, "
                "which the kernels package fetches from the Hugging Face Hub",
                fix="pip install kernels",
            )
        if _offline() and not _cached(HUB_KERNEL):
            return MartletError(
                f"the eetq quantizer needs the kernel {HUB_KERNEL}, which is not on this machine",
                why="transformers fetches it from the Hugging Face Hub on the first EETQ load, "
                "and HF_HUB_OFFLINE is set",
                fix="unset HF_HUB_OFFLINE for the first load (or fetch it once where the Hub is "
                f"reachable: {FETCH})",
            )
        return None
    if importlib.util.find_spec("eetq") is None:
        return MissingDependencyError(
            "the eetq quantizer needs the eetq package, which is not installed",
            why="EETQ has no PyPI release, and this transformers imports EETQ's CUDA kernels "
            "from it",
            fix=f"build it on a machine with CUDA and nvcc: {BUILD} (or upgrade transformers "
            "to 5, which fetches prebuilt kernels through the kernels package)",
        )
    return None


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _cached(repo_id: str) -> bool:
    from huggingface_hub import constants

    folder = Path(constants.HF_HUB_CACHE) / ("models--" + repo_id.replace("/", "--"))
    return (folder / "snapshots").is_dir()


class EetqQuantizer:
    """The ``eetq`` quantizer record's implementation."""

    def quantize_on_load(self, bits: int, **options: Any) -> Any:
        if bits != 8:
            raise ConfigError(
                f"eetq cannot quantize to {bits} bits",
                why="EETQ stores int8 weights only",
                fix="pass --quant-bits 8, or leave it out",
            )
        if options:
            raise ConfigError(f"the eetq quantizer takes no option {', '.join(sorted(options))}")
        error = missing(kernel_source())
        if error is not None:
            raise error
        import torch

        if not torch.cuda.is_available():
            raise MartletError(
                "the eetq quantizer needs a CUDA GPU",
                why="EETQ's kernels exist only for CUDA, and this machine has no CUDA device",
                fix="run it on a machine with an NVIDIA GPU, or use "
                "--quant-method quanto --quant-bits 8 or --quant-method hqq --quant-bits 8",
            )
        from transformers import EetqConfig

        return EetqConfig(weights="int8")
