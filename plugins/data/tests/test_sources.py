"""Which source reads a spec, the selector syntax, registered and hub datasets (offline),
several datasets at once, and the Python API."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import martlet
import pytest
from martlet.errors import ConfigError, MissingDependencyError, UnknownNameError
from martlet_data.errors import BadRowError, EmptyDatasetError
from martlet_data.hubs import HubError
from martlet_data.loading import load_datasets
from martlet_data.rows import Rows, RowStream
from martlet_data.sources import HfSource, LocalSource, ModelScopeSource, NamedSource
from martlet_data.spec import parse_spec

SOURCES = {
    "local": LocalSource(),
    "hf": HfSource(),
    "modelscope": ModelScopeSource(),
    "named": NamedSource(),
}


# ------------------------------------------------------------------------ spec syntax


@pytest.mark.parametrize(
    "spec,name,hub,subsets,count",
    [
        ("sample-sft", "sample-sft", None, (), None),
        ("sample-sft#100", "sample-sft", None, (), 100),
        ("ceval:computer_network", "ceval", None, ("computer_network",), None),
        ("ceval:law/logic#20", "ceval", None, ("law", "logic"), 20),
        ("openai/gsm8k:main", "openai/gsm8k", None, ("main",), None),
        ("hf::openai/gsm8k:main#5", "openai/gsm8k", "huggingface", ("main",), 5),
        ("HF::org/name", "org/name", "huggingface", (), None),
        (
            "ms::AI-ModelScope/alpaca-gpt4-data-en",
            "AI-ModelScope/alpaca-gpt4-data-en",
            "modelscope",
            (),
            None,
        ),
        ("modelscope::a/b:x", "a/b", "modelscope", ("x",), None),
        (" data/train.jsonl#3 ", "data/train.jsonl", None, (), 3),
    ],
)
def test_parse_spec(spec, name, hub, subsets, count):
    parsed = parse_spec(spec)
    assert (parsed.name, parsed.hub, parsed.subsets, parsed.count) == (name, hub, subsets, count)


@pytest.mark.parametrize(
    "spec,message",
    [
        ("", "non-empty string"),
        ("x#0", "positive integer"),
        ("x#ten", "positive integer, got 'ten'"),
        ("gh::org/name", "unknown hub prefix 'gh'"),
        ("ceval:", "empty subset"),
        ("#5", "names no dataset"),
    ],
)
def test_bad_specs_are_config_errors(spec, message):
    with pytest.raises(ConfigError, match=message):
        parse_spec(spec)


# ------------------------------------------------------------------------ exactly one claims


def _claims(spec, hub=None):
    return sorted(name for name, src in SOURCES.items() if src.can_read(spec, hub=hub))


@pytest.mark.parametrize(
    "spec,hub,claimed",
    [
        ("sample-sft", None, ["named"]),
        ("sample-sft", "modelscope", ["named"]),
        ("no-such-dataset", None, ["named"]),
        ("ceval:law#3", None, ["named"]),
        ("openai/gsm8k", None, ["hf"]),
        ("openai/gsm8k", "huggingface", ["hf"]),
        ("openai/gsm8k", "hf", ["hf"]),
        ("openai/gsm8k", "modelscope", ["modelscope"]),
        ("openai/gsm8k", "ms", ["modelscope"]),
        ("hf::openai/gsm8k", "modelscope", ["hf"]),
        ("ms::modelscope/gsm8k", None, ["modelscope"]),
        ("data.jsonl", None, ["local"]),
        ("dir/data.parquet#5", None, ["local"]),
        ("./folder", None, ["local"]),
        ("/abs/folder", None, ["local"]),
        ("~/x", None, ["local"]),
    ],
)
def test_exactly_one_source_claims_each_spec(spec, hub, claimed):
    assert _claims(spec, hub) == claimed


def test_an_existing_folder_named_like_a_hub_id_is_local(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "org" / "name").mkdir(parents=True)
    (tmp_path / "org" / "name" / "a.jsonl").write_text('{"text": "local"}\n')
    assert _claims("org/name") == ["local"]
    assert martlet.load_dataset("org/name") == [{"text": "local"}]


def test_an_existing_file_named_like_a_dataset_is_local(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sample-sft").write_text("x")
    assert _claims("sample-sft") == ["local"]


def test_can_read_never_raises_on_nonsense():
    for src in SOURCES.values():
        assert src.can_read("", hub=None) is False
        assert src.can_read("x#nope") is False
        assert src.can_read("org/name", hub="github") in (True, False)


# ------------------------------------------------------------------------ named datasets


def test_embedded_dataset_by_name_and_alias_spellings():
    rows = martlet.load_dataset("sample-sft")
    assert isinstance(rows, Rows) and len(rows) >= 300
    assert martlet.load_dataset("SAMPLE_SFT#5") == martlet.load_dataset("sample-sft#5")


def test_unknown_name_suggests_close_ones():
    with pytest.raises(UnknownNameError) as info:
        martlet.load_dataset("sample-sfft")
    assert "sample-sft" in info.value.why
    with pytest.raises(UnknownNameError) as info:
        martlet.load_dataset("squad")
    assert info.value.what == "unknown dataset 'squad'"
    assert "hf::squad" in info.value.fix and "./squad" in info.value.fix


def test_named_dataset_without_subsets_refuses_one():
    with pytest.raises(ConfigError, match="has no subsets"):
        martlet.load_dataset("sample-sft:train")


def test_register_dataset_makes_a_name_usable_everywhere(write_jsonl, martlet_cli, tmp_path):
    path = write_jsonl([{"query": f"q{i}", "response": f"r{i}"} for i in range(4)])
    record = martlet.register_dataset("my-rows", path=str(path), tags=("mine",))
    assert record.origin.startswith("local:python:my-rows")
    assert len(martlet.load_dataset("my-rows")) == 4
    assert len(martlet.load_dataset("my_rows#2")) == 2
    result = martlet_cli("dataset", "list", "--tag", "mine")
    assert result.exit_code == 0 and "my-rows" in result.stdout
    out = tmp_path / "out.jsonl"
    result = martlet_cli("dataset", "prepare", "my-rows", "--output", str(out))
    assert result.exit_code == 0, result.stderr
    assert len(out.read_text().splitlines()) == 4


def test_register_dataset_with_a_format_and_columns(write_jsonl):
    path = write_jsonl([{"q": "2+2?", "a": "4", "text": "ignored"}])
    martlet.register_dataset("pairs", path=str(path), format="query_response")
    rows = martlet.load_dataset("pairs", columns={"q": "query", "a": "response"})
    assert rows[0]["messages"][1]["content"] == "4"


def test_a_registered_dataset_with_an_unknown_format_is_reported(write_jsonl):
    from martlet_data.errors import DataError

    martlet.register_dataset("odd", path=str(write_jsonl([{"text": "x"}])), format="yaml")
    with pytest.raises(DataError, match="declares an unknown format 'yaml'"):
        martlet.load_dataset("odd")


def test_a_registered_generator_dataset(martlet_manager):
    import types

    from martlet import hookimpl
    from martlet.records import DatasetRecord

    module = types.ModuleType("gen_rows_for_test")
    module.rows = lambda **options: [{"query": "q", "response": "r"}, {"text": ""}]
    sys.modules[module.__name__] = module
    try:

        class Hooks:
            @hookimpl
            def martlet_datasets(self):
                yield DatasetRecord(name="generated", impl="gen_rows_for_test:rows", summary="g")

        martlet.register_plugin(Hooks(), name="gen")
        rows = martlet.load_dataset("generated", on_bad_rows="skip")
        assert len(rows) == 1 and rows.report.counts == {"empty text": 1}
        with pytest.raises(BadRowError, match="dataset generated, row 2: empty text"):
            martlet.load_dataset("generated")
    finally:
        del sys.modules[module.__name__]


# ------------------------------------------------------------------------ hubs, offline


def test_hub_dataset_offline_fails_fast_naming_the_hub():
    start = time.monotonic()
    with pytest.raises(HubError) as info:
        martlet.load_dataset("ceval:law")
    assert time.monotonic() - start < 30
    message = info.value.message()
    assert "not in the local Hugging Face cache" in message and "ceval/ceval-exam" in message
    assert "HF_HUB_OFFLINE" in message


def test_hub_id_offline_fails_fast_naming_the_hub():
    with pytest.raises(HubError, match="Hugging Face"):
        martlet.load_dataset("openai/gsm8k:main")
    with pytest.raises(HubError, match="Hugging Face"):
        martlet.load_dataset("hf::openai/gsm8k", streaming=True)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_hub_is_detected_before_datasets_retries(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("HF_DATASETS_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    start = time.monotonic()
    with pytest.raises(HubError) as info:
        martlet.load_dataset("openai/gsm8k")
    assert time.monotonic() - start < 10
    assert info.value.what.startswith("cannot reach the Hugging Face Hub (http://127.0.0.1:")
    assert "HF_HUB_OFFLINE=1" in info.value.fix


def test_the_cli_never_hangs_on_a_hub_dataset_without_network(tmp_path):
    """A fresh process with no offline flag and the real endpoint: it must end quickly with
    an error naming the hub, whether or not this machine has a network (the hub must not be
    contacted for real here, so the endpoint is a closed local port)."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MARTLET_"))}
    env["HF_ENDPOINT"] = f"http://127.0.0.1:{_closed_port()}"
    code = "import sys; from martlet.cli import main; sys.exit(main())"
    out = tmp_path / "x.jsonl"
    proc = subprocess.run(
        [sys.executable, "-c", code, "dataset", "prepare", "--name", "ceval", "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode != 0
    assert "cannot reach the Hugging Face Hub" in proc.stderr, proc.stderr
    assert "ceval/ceval-exam" in proc.stderr and not out.exists()


def test_modelscope_without_its_package_says_what_to_install():
    pytest.importorskip("martlet_data")
    try:
        import modelscope  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("modelscope is installed here")
    with pytest.raises(MissingDependencyError) as info:
        martlet.load_dataset("ms::AI-ModelScope/alpaca-gpt4-data-en")
    assert "pip install 'martlet-data[modelscope]'" in info.value.fix
    with pytest.raises(MissingDependencyError):
        martlet.load_dataset("AI-ModelScope/alpaca-gpt4-data-en", hub="modelscope")
    with pytest.raises(MissingDependencyError):  # a registered name on its ModelScope id
        martlet.load_dataset("sharegpt-gpt4")


def test_named_dataset_picks_the_hub_asked_for(monkeypatch):
    calls = []

    def fake(kind):
        def rows(dataset, subsets, split, *, streaming, num_proc=None):
            calls.append((kind, dataset, subsets, split))
            return lambda: iter([("x", {"question": "q", "choices": ["a", "b"], "answer": 1})])

        return rows

    import martlet_data.hubs as hubs

    monkeypatch.setattr(hubs, "hf_rows", fake("hf"))
    monkeypatch.setattr(hubs, "ms_rows", fake("ms"))
    rows = martlet.load_dataset("mmlu")
    assert calls[-1] == ("hf", "cais/mmlu", ("all",), "test")
    assert rows[0]["answer"] == "B" and rows[0]["choices"] == ["a", "b"]
    martlet.load_dataset("mmlu:anatomy", hub="modelscope", split="dev")
    assert calls[-1] == ("ms", "modelscope/mmlu", ("anatomy",), "dev")
    # the fake's one row fits neither dataset: skipped, which leaves no rows (an error)
    with pytest.raises(EmptyDatasetError, match="1 row, all skipped"):
        martlet.load_dataset("sharegpt-gpt4", format="messages", on_bad_rows="skip")
    assert calls[-1][:2] == ("ms", "AI-ModelScope/sharegpt_gpt4")  # only on ModelScope
    with pytest.raises(EmptyDatasetError, match="1 row, all skipped"):
        martlet.load_dataset("arc", hub="modelscope", on_bad_rows="skip")
    assert calls[-1][:2] == ("hf", "allenai/ai2_arc")  # falls back to the hub it is on


# ------------------------------------------------------------------------ several at once


def test_load_datasets_concatenates_and_merges_reports(write_jsonl):
    a = write_jsonl([{"text": "a1"}, {"text": ""}], "a.jsonl")
    b = write_jsonl([{"query": "q", "response": "r"}], "b.jsonl")
    rows = load_datasets([str(a), str(b), "sample-pt#3"], on_bad_rows="skip")
    assert len(rows) == 5 and rows[0] == {"text": "a1"}
    assert rows.report.counts == {"empty text": 1}
    assert rows.formats == {"text": 4, "query_response": 1}
    assert rows.specs == (str(a), str(b), "sample-pt#3")
    stream = load_datasets([str(a), str(b)], on_bad_rows="skip", streaming=True)
    assert isinstance(stream, RowStream)
    assert len(list(stream)) == 2 and stream.report.skipped == 1
    with pytest.raises(ConfigError, match="no dataset given"):
        load_datasets([])


def test_load_dataset_with_a_named_source():
    rows = martlet.load_dataset("sample-pt#2", source="named")
    assert len(rows) == 2


def test_a_registered_path_in_a_missing_package():
    from martlet_data.errors import DataError

    martlet.register_dataset("ghost", path="no_such_package_xyz:data/rows.jsonl")
    with pytest.raises(DataError, match="names package 'no_such_package_xyz', which is not"):
        martlet.load_dataset("ghost")


def test_a_registered_dataset_on_a_hub_nobody_reads():
    from martlet_data.errors import DataError

    martlet.register_dataset("elsewhere", hub_ids={"kaggle": "someone/rows"})
    with pytest.raises(DataError, match="names no hub this plugin reads"):
        martlet.load_dataset("elsewhere")


@pytest.mark.parametrize(
    "exc,kind,message",
    [
        (type("DatasetNotFoundError", (Exception,), {})("no"), HubError, "has no dataset"),
        (ValueError("BuilderConfig 'zz' not found"), ConfigError, "has no subset 'zz'"),
        (ConnectionError("Couldn't reach"), HubError, "cannot reach the Hugging Face Hub"),
        (RuntimeError("disk full"), Exception, "cannot read Hugging Face dataset"),
    ],
)
def test_datasets_errors_become_errors_users_can_act_on(monkeypatch, exc, kind, message):
    from martlet_data.hubs import _hf_error

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("HF_DATASETS_OFFLINE")
    error = _hf_error(exc, "org/name", "zz", "train")
    assert isinstance(error, kind) and message in error.message()


def test_a_script_dataset_is_read_from_the_hubs_parquet_conversion(monkeypatch):
    import datasets

    calls = []

    def fake_load(name, subset, **kwargs):
        calls.append(kwargs.get("revision"))
        if kwargs.get("revision") is None:
            raise RuntimeError("Dataset scripts are no longer supported, but found cmmlu.py")
        return [{"Question": "q?", "A": "1", "B": "2", "C": "3", "D": "4", "Answer": "C"}]

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    rows = martlet.load_dataset("cmmlu:anatomy")
    assert calls == [None, "refs/convert/parquet"]
    assert rows[0]["answer"] == "C"

    def always_fails(name, subset, **kwargs):
        raise RuntimeError("Dataset scripts are no longer supported, but found piqa.py")

    monkeypatch.setattr(datasets, "load_dataset", always_fails)
    with pytest.raises(Exception, match="cannot read Hugging Face dataset 'ybisk/piqa'"):
        martlet.load_dataset("piqa")
