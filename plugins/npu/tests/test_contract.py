"""martlet-npu against the SDK's accelerator contract. Without torch_npu the implementation
checks skip ("needs torch-npu"); without an NPU the device checks skip."""

import pytest
from martlet_sdk.contracts import AcceleratorContract


class TestNpu(AcceleratorContract):
    @pytest.fixture
    def plugin(self):
        return "npu"  # tested through its entry point, as users get it

    @pytest.fixture
    def record_name(self):
        return "npu"
