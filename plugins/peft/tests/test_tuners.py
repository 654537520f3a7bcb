"""Every tuner passes the SDK's tuner contract on the tiny model."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from martlet_peft.options import TunerOptions
from martlet_sdk.contracts import TunerContract

TUNERS = [
    "lora",
    "adalora",
    "ia3",
    "vera",
    "boft",
    "loha",
    "lokr",
    "prompt-tuning",
    "prefix-tuning",
    "full",
    "freeze",
    "galore",
    "lisa",
    "llamapro",
    "reft",
]


@dataclass(kw_only=True)
class Config(TunerOptions):
    learning_rate: float = 1e-2
    weight_decay: float = 0.0
    max_steps: int = 8
    seed: int = 0


# per tuner: options that make a short run on the tiny model meaningful
SETTINGS = {
    "lora": dict(lora_dropout=0.0),
    "adalora": dict(lora_dropout=0.0, adalora_total_step=8, adalora_tinit=2, adalora_tfinal=2),
    "ia3": dict(learning_rate=5e-2),
    "vera": dict(vera_rank=16, learning_rate=5e-2),
    "boft": dict(boft_block_size=4),
    "prompt-tuning": dict(num_virtual_tokens=4, learning_rate=5e-2),
    "prefix-tuning": dict(num_virtual_tokens=4, learning_rate=5e-2),
    "full": dict(learning_rate=1e-3),
    "freeze": dict(trainable_layers=1, trainable_parameters=[r"lm_head"], learning_rate=1e-3),
    "galore": dict(galore_rank=4, galore_update_proj_gap=2, learning_rate=1e-3),
    "lisa": dict(lisa_activated_layers=1, lisa_step_interval=2, learning_rate=1e-3),
    "llamapro": dict(llamapro_num_new_blocks=2, learning_rate=1e-2),
    "reft": dict(reft_rank=4, learning_rate=1e-2),
}


class TestTuners(TunerContract):
    @pytest.fixture
    def plugin(self):
        return "peft"

    @pytest.fixture(params=TUNERS)
    def record_name(self, request):
        return request.param

    @pytest.fixture
    def tuner_config(self, record_name):
        return Config(tuner=record_name, **SETTINGS.get(record_name, {}))
