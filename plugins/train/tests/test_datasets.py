"""TrainDataOptions as a command's option group, and the train/validation rows it selects
(read through the core from whichever dataset sources are installed: here martlet-data's)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest
from martlet import config as cfg
from martlet.cli import config_command
from martlet.config import option
from martlet.errors import ConfigError
from martlet.options import DatasetReadOptions
from martlet_train.datasets import Chain, TrainDataOptions, load_train_val


@pytest.fixture(autouse=True)
def _data(martlet_manager, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    martlet_manager("data")


@dataclass(kw_only=True)
class JobConfig(TrainDataOptions):
    """What a training command would compose (plus one field of its own)."""

    output_dir: str = option("out", help="where to write")


def _build(*flags):
    parsed = cfg.parse_flags(JobConfig, list(flags))
    return cfg.build(JobConfig, flags=parsed.values)


def test_flags_in_ms_swift_spelling():
    config = _build(
        "--dataset", "sample-sft#10", "sample-pt#5",
        "--val_dataset", "sample-sft#3",
        "--columns", '{"q": "query"}',
        "--on-bad-rows", "skip",
        "--model_name", "Aria", "阿莉亚",
        "--model_author", "Acme",
        "--num_proc", "4",
        "--split_dataset_ratio", "0.1",
        "--data_seed", "7",
        "--packing",
        "--streaming", "false",
        "--dataset-hub", "modelscope",
    )  # fmt: skip
    assert config.dataset == ["sample-sft#10", "sample-pt#5"]
    assert config.val_dataset == ["sample-sft#3"]
    assert config.columns == {"q": "query"}
    assert config.model_name == ["Aria", "阿莉亚"] and config.dataset_num_proc == 4
    assert config.packing is True and config.streaming is False
    assert config.read_options() == {
        "streaming": False,
        "on_bad_rows": "skip",
        "seed": 7,
        "columns": {"q": "query"},
        "hub": "modelscope",
        "model_name": ("Aria", "阿莉亚"),
        "model_author": ("Acme",),
        "num_proc": 4,
    }


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--split-dataset-ratio", "1.5"], "must be in [0, 1)"),
        (["--dataset-num-proc", "0"], "at least 1"),
        (["--model-name", "a", "b", "c"], "one or two names"),
        (["--columns", "[1]"], "expects JSON"),
        (["--columns", '{"a": 1}'], "must map column names"),
        (["--on-bad-rows", "drop"], "must be one of error, skip"),
        (["--datset", "x"], "did you mean --dataset"),
    ],
)
def test_bad_values_are_config_errors(flags, message):
    with pytest.raises(ConfigError) as info:
        _build(*flags)
    assert message in info.value.message()


def test_field_names_are_unique_across_the_option_groups():
    names = [f.name for f in dataclasses.fields(TrainDataOptions)]
    assert len(names) == len(set(names))
    from martlet import options as hf  # the core's option groups

    @dataclass(kw_only=True)
    class Sft(hf.ModelOptions, TrainDataOptions, hf.TemplateOptions):
        pass

    mine = {f.name for f in dataclasses.fields(TrainDataOptions)}
    theirs = {f.name for f in dataclasses.fields(hf.ModelOptions)} | {
        f.name for f in dataclasses.fields(hf.TemplateOptions)
    }
    assert not mine & theirs
    aliases = [a for s in cfg.specs(Sft).values() for a in (s.name, *s.aliases)]
    assert len(aliases) == len({cfg.key(a) for a in aliases})
    config = cfg.build(Sft, values={"model": "m", "dataset": ["sample-sft"], "max_length": 64})
    assert config.dataset == ["sample-sft"] and config.max_length == 64
    with pytest.raises(ConfigError, match="split-dataset-ratio"):  # every group validates
        cfg.build(Sft, values={"model": "m", "split_dataset_ratio": 2.0})
    with pytest.raises(ConfigError, match="max-length"):
        cfg.build(Sft, values={"model": "m", "max_length": 0})


def test_a_config_command_built_on_the_options(martlet_cli):
    import martlet
    from martlet import hookimpl
    from martlet.records import CommandRecord

    seen = []

    @config_command(JobConfig, name="job")
    def job(config):
        """Run a job."""
        seen.append(load_train_val(config))

    import sys
    import types

    module = types.ModuleType("job_cmd_for_test")
    module.job = job
    sys.modules[module.__name__] = module
    try:

        class Hooks:
            @hookimpl
            def martlet_commands(self):
                yield CommandRecord(name="job", impl="job_cmd_for_test:job", summary="job")

        martlet.register_plugin(Hooks(), name="job")
        result = martlet_cli("job", "--dataset", "sample-sft#20", "--split-dataset-ratio", "0.25")
        assert result.exit_code == 0, result.stderr
        train, val = seen[0]
        assert len(train) == 15 and len(val) == 5
    finally:
        del sys.modules[module.__name__]


def test_load_train_val_splits_and_shuffles_deterministically():
    options = JobConfig(dataset=["sample-sft#40"], split_dataset_ratio=0.1, data_seed=3)
    train, val = load_train_val(options)
    again_train, again_val = load_train_val(options)
    assert len(train) == 36 and len(val) == 4
    assert train == again_train and val == again_val
    all_rows = DatasetReadOptions(dataset=["sample-sft#40"], data_seed=3).read_options()
    import martlet

    everything = martlet.load_dataset("sample-sft#40", **all_rows)
    assert sorted(map(str, train + val)) == sorted(map(str, everything))
    assert list(train) != list(everything)[: len(train)]  # shuffled
    unshuffled, _ = load_train_val(
        JobConfig(dataset=["sample-sft#40"], dataset_shuffle=False, data_seed=3)
    )
    assert list(unshuffled) == list(everything)


def test_load_train_val_with_a_validation_dataset_and_streaming():
    train, val = load_train_val(JobConfig(dataset=["sample-sft#5"], val_dataset=["sample-pt#2"]))
    assert len(train) == 5 and len(val) == 2
    train, val = load_train_val(JobConfig(dataset=["sample-sft"], streaming=True))
    assert not isinstance(train, list) and val is None  # the source's stream, read lazily
    assert len(list(train)) == len(list(train)) > 0  # and again from the start
    both, _ = load_train_val(JobConfig(dataset=["sample-sft#3", "sample-pt#2"], streaming=True))
    assert isinstance(both, Chain) and len(list(both)) == len(list(both)) == 5
    with pytest.raises(ConfigError, match="cannot split a streamed dataset"):
        load_train_val(JobConfig(dataset=["sample-sft"], streaming=True, split_dataset_ratio=0.1))
    with pytest.raises(ConfigError, match="no --dataset"):
        load_train_val(JobConfig())
    with pytest.raises(ConfigError, match="leaves no training rows"):
        load_train_val(JobConfig(dataset=["sample-sft#1"], split_dataset_ratio=0.9))


def test_load_train_val_raises_for_an_empty_dataset(tmp_path):
    from martlet_data.errors import EmptyDatasetError

    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    with pytest.raises(EmptyDatasetError, match=f"dataset {str(empty)!r} has no rows"):
        load_train_val(JobConfig(dataset=[str(empty)]))
    good = tmp_path / "good.jsonl"
    good.write_text('{"text": "a"}\n')
    with pytest.raises(EmptyDatasetError, match=f"dataset {str(empty)!r} has no rows"):
        load_train_val(JobConfig(dataset=[str(good)], val_dataset=[str(empty)]))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"nothing": 1}\n{"nothing": 2}\n')
    with pytest.raises(EmptyDatasetError, match="2 rows, all skipped"):
        load_train_val(JobConfig(dataset=[str(bad)], on_bad_rows="skip"))
    train, _ = load_train_val(JobConfig(dataset=[str(empty)], streaming=True))
    with pytest.raises(EmptyDatasetError, match=f"dataset {str(empty)!r} has no rows"):
        list(train)  # where training reads the stream


def test_another_plugins_source_may_return_plain_rows(martlet_manager):
    """The interface lets a source return a plain list (or any iterable when streaming); an
    empty one is an error naming the dataset, not an empty run."""
    from martlet import hookimpl
    from martlet.records import DatasetSourceRecord

    class Counting:
        def can_read(self, spec, *, hub=None):
            return spec.startswith("count:")

        def read(self, spec, *, streaming=False, **options):
            n = int(spec.split(":")[1])
            rows = ({"text": f"row {i}"} for i in range(n))
            return rows if streaming else list(rows)

    import sys
    import types

    module = types.ModuleType("counting_source_for_test")
    module.Counting = Counting
    sys.modules[module.__name__] = module

    class Hooks:
        MARTLET_API = 1

        @hookimpl
        def martlet_dataset_sources(self):
            yield DatasetSourceRecord(
                name="counting", impl=f"{module.__name__}:Counting", summary="n text rows"
            )

    try:
        martlet_manager(Hooks())
        train, val = load_train_val(JobConfig(dataset=["count:3", "count:2"], data_seed=1))
        assert sorted(r["text"] for r in train) == ["row 0", "row 0", "row 1", "row 1", "row 2"]
        with pytest.raises(ConfigError, match="dataset 'count:0' has no rows"):
            load_train_val(JobConfig(dataset=["count:0"]))
    finally:
        del sys.modules[module.__name__]
