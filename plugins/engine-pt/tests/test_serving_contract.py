"""The pt engine passes the SDK's serving contract on the tiny model."""

from __future__ import annotations

import pytest
from martlet_sdk.contracts import ServingContract


class TestPtServing(ServingContract):
    @pytest.fixture
    def plugin(self):
        return "engine-pt"

    @pytest.fixture
    def record_name(self):
        return "pt"
