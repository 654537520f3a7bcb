"""`--deepspeed`'s presets and JSON files: read, checked and their "auto" values filled from the
run, without deepspeed or torch; and the record's contract."""

from __future__ import annotations

import json

import pytest
from martlet.errors import ConfigError
from martlet_deepspeed import config as ds
from martlet_sdk.contracts import ParallelContract

RUN = dict(micro_batch=2, accumulation=3, world_size=2, max_grad_norm=1.0, bf16=False)


def test_presets_follow_ms_swift_and_fill_from_the_run():
    assert ds.PRESETS == ("zero1", "zero2", "zero3", "zero2_offload", "zero3_offload")
    for name in ds.PRESETS:
        config = ds.filled(ds.read(name), **RUN, hidden_size=64)
        assert config["train_micro_batch_size_per_gpu"] == 2
        assert config["gradient_accumulation_steps"] == 3
        assert config["train_batch_size"] == 2 * 3 * 2
        assert config["gradient_clipping"] == 1.0
        assert config["bf16"] == {"enabled": False} and config["fp16"] == {"enabled": False}
        assert ds.stage(config) == int(name[4])
        assert ds.offloads(config) == (name.endswith("_offload"), name == "zero3_offload")
        assert "auto" not in json.dumps(config)
    zero3 = ds.filled(ds.read("zero3"), **RUN, hidden_size=64)["zero_optimization"]
    assert zero3["reduce_bucket_size"] == 64 * 64
    assert zero3["stage3_param_persistence_threshold"] == 640


def test_a_json_file_is_read_and_its_auto_values_filled(tmp_path):
    path = tmp_path / "ds.json"
    path.write_text(
        json.dumps(
            {
                "train_micro_batch_size_per_gpu": "auto",
                "gradient_accumulation_steps": 3,
                "bf16": {"enabled": "auto"},
                "optimizer": {"type": "AdamW", "params": {"lr": "auto"}},
                "zero_optimization": {"stage": 3, "offload_param": {"device": "cpu"}},
            }
        )
    )
    config = ds.filled(ds.read(str(path)), **{**RUN, "bf16": True}, hidden_size=None)
    assert config["train_micro_batch_size_per_gpu"] == 2
    assert config["bf16"] == {"enabled": True}
    assert "optimizer" not in config  # the run's own optimizer trains
    assert ds.offloads(config) == (False, True)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "cannot be read as a DeepSpeed config"),
        ("[1, 2]", "is not a DeepSpeed config"),
        ('{"zero_optimization": {"stage": 0}}', "ZeRO stage 0 is not supported"),
        ('{"zero_optimization": {"stage": 2, "offload_param": {"device": "cpu"}}}',
         "offload_param needs ZeRO stage 3"),
        ('{"zero_optimization": {"stage": 3, "offload_optimizer": {"device": "nvme"}}}',
         "'nvme' is not supported"),
        ('{"zero_optimization": {"stage": 2}, "fp16": {"enabled": true}}',
         "fp16 is not supported"),
        ('{"zero_optimization": {"stage": 2}, "scheduler": {"params": {"warmup_num_steps": 10}}}',
         "'scheduler' section is not supported"),
    ],
)  # fmt: skip
def test_a_config_this_strategy_cannot_run_is_a_clear_error(tmp_path, content, message):
    path = tmp_path / "ds.json"
    path.write_text(content)
    with pytest.raises(ConfigError) as caught:
        ds.read(str(path))
    assert message in str(caught.value)
    assert caught.value.fix


def test_a_missing_file_and_a_contradicting_value_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="no such preset or file") as caught:
        ds.read(str(tmp_path / "missing.json"))
    assert "zero3_offload" in caught.value.fix
    config = {"zero_optimization": {"stage": 2}, "train_micro_batch_size_per_gpu": 8}
    with pytest.raises(ConfigError, match="train_micro_batch_size_per_gpu is 8, the run's is 2"):
        ds.filled(config, **RUN, hidden_size=64)


class TestDeepSpeedContract(ParallelContract):
    @pytest.fixture
    def plugin(self):
        return "deepspeed"

    @pytest.fixture
    def record_name(self):
        return "deepspeed"
