"""Registers the `npu` accelerator. Imports only martlet: no torch, no torch_npu."""

from martlet import hookimpl
from martlet.records import AcceleratorRecord

MARTLET_API = 1  # the Martlet plugin API this plugin was written for


@hookimpl
def martlet_accelerators():
    yield AcceleratorRecord(
        name="npu",
        impl="martlet_npu.accelerator:NpuAccelerator",
        aliases=("ascend",),
        # checked from installed metadata, before anything is imported: without torch_npu the
        # record is still listed (`martlet doctor`: "needs torch-npu") but never chosen
        requires=("torch", "torch-npu"),
        summary="Huawei Ascend NPUs through torch_npu (hccl between processes).",
    )
