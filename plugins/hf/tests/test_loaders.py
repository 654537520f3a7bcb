"""The hf and gguf model loaders: which claims what, options, hub ids on disk, and errors."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import martlet
import pytest
from martlet.api import model_loader
from martlet.errors import ConfigError, MartletError, UnknownNameError
from martlet_hf.hub import _repo_for, record_download
from martlet_hf.loaders import (
    GgufLoader,
    HfLoader,
    ModelLoadError,
    convert_gguf,
    gguf_cache_folder,
    normalize_options,
)

# ---------------------------------------------------------------------- who claims what


@pytest.mark.parametrize(
    ("source", "loader"),
    [
        ("model.gguf", GgufLoader),
        ("/models/llama/Llama-3.1-8B.Q4_K_M.GGUF", GgufLoader),
        ("Qwen/Qwen2.5-0.5B-Instruct", HfLoader),
        ("gpt2", HfLoader),
        ("/no/such/folder", HfLoader),
        ("./relative/folder", HfLoader),
    ],
)
def test_exactly_one_loader_claims_a_source(source, loader):
    assert isinstance(model_loader(source), loader)


def test_a_folder_is_hf_and_a_gguf_file_is_gguf(tiny_model_dir, tmp_path):
    assert isinstance(model_loader(str(tiny_model_dir)), HfLoader)
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    assert isinstance(model_loader(str(gguf)), GgufLoader)
    assert not HfLoader().can_load(str(gguf))


def test_no_loader_claims_other_files(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    with pytest.raises(UnknownNameError, match="no model loader can read"):
        model_loader(str(notes))
    with pytest.raises(UnknownNameError):
        model_loader("s3://bucket/model")


# ---------------------------------------------------------------------- loading a folder


def test_load_a_folder(tiny_model_dir):
    model, tokenizer = martlet.load_model(str(tiny_model_dir))
    assert type(model).__name__ == "LlamaForCausalLM"
    assert tokenizer.is_fast and tokenizer.eos_token == "<|im_end|>"
    assert str(model.dtype) == "torch.float32"
    assert martlet.load_tokenizer(str(tiny_model_dir)).get_vocab() == tokenizer.get_vocab()


def test_options_reach_from_pretrained(tiny_model_dir):
    model, _ = martlet.load_model(
        str(tiny_model_dir), torch_dtype="bf16", attn_impl="eager", device_map="cpu"
    )
    assert str(model.dtype) == "torch.bfloat16"
    assert model.config._attn_implementation == "eager"
    assert model.device.type == "cpu"


def test_ms_swift_and_transformers_option_names(tiny_model_dir):
    model, _ = martlet.load_model(
        str(tiny_model_dir), dtype="float16", attn_implementation="sdpa", model_revision=None
    )
    assert str(model.dtype) == "torch.float16"
    assert model.config._attn_implementation == "sdpa"


def test_option_values_are_normalised():
    opts = normalize_options(
        {
            "torch_dtype": "BF16",
            "attn_impl": "flash_attn",
            "device_map": '{"": "cpu"}',
            "max_memory": '{"0": "20GiB", "cpu": "64GiB"}',
            "trust_remote_code": False,
            "revision": None,
        }
    )
    assert opts == {
        "torch_dtype": "bfloat16",
        "attn_impl": "flash_attention_2",
        "device_map": {"": "cpu"},
        "max_memory": {0: "20GiB", "cpu": "64GiB"},
        "trust_remote_code": False,
    }


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"torch_dtype": "float8"}, "unknown torch_dtype 'float8'"),
        ({"attn_impl": "fast"}, "unknown attention implementation 'fast'"),
        ({"torch_type": "bf16"}, "unknown model loading option 'torch_type'"),
        ({"max_memory": "{oops"}, "max_memory is not valid JSON"),
        ({"max_memory": "20GiB"}, "max_memory must be a mapping"),
        ({"device_map": 1.5}, "device_map must be a name"),
        ({"trust_remote_code": "yes"}, "trust_remote_code must be true or false"),
    ],
)
def test_bad_options_are_config_errors(tiny_model_dir, options, message):
    with pytest.raises(ConfigError) as info:
        martlet.load_model(str(tiny_model_dir), **options)
    assert message in info.value.message()


def test_unknown_option_suggests_the_close_one():
    with pytest.raises(ConfigError) as info:
        normalize_options({"torch_type": "bf16"})
    assert "did you mean 'torch_dtype'?" in info.value.why


def test_custom_code_needs_trust_remote_code(tiny_model_dir, tmp_path):
    folder = tmp_path / "custom"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(
        model_type="acme_custom",
        auto_map={"AutoConfig": "cfg.AcmeConfig", "AutoModelForCausalLM": "mod.AcmeModel"},
    )
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError) as info:
        martlet.load_model(str(folder))
    assert "--trust-remote-code" in info.value.fix


def test_missing_or_incomplete_folders(tmp_path):
    with pytest.raises(ModelLoadError) as info:
        martlet.load_model(str(tmp_path / "nope"))
    assert "does not exist" in info.value.what
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError) as info:
        martlet.load_model(str(tmp_path / "empty"))
    assert "is not a model folder" in info.value.what and "config.json" in info.value.why
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ModelLoadError) as info:
        martlet.load_model(str(broken))
    assert "cannot load the tokenizer" in info.value.what


# ---------------------------------------------------------------------- hub ids, on disk only


def test_a_hub_id_not_on_this_machine_says_to_download_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(ModelLoadError) as info:
        martlet.load_model("acme/not-downloaded")
    assert info.value.what == (
        "the Hugging Face Hub model 'acme/not-downloaded' is not on this machine"
    )
    assert "nothing is downloaded implicitly" in info.value.why
    # the tests run with HF_HUB_OFFLINE=1, under which `martlet download` refuses to fetch
    assert info.value.fix == (
        "unset HF_HUB_OFFLINE, then run `martlet download acme/not-downloaded` (needs the "
        "network), or pass the path of a local folder that holds the model"
    )
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    with pytest.raises(ModelLoadError) as info:
        martlet.load_model("acme/not-downloaded")
    assert info.value.fix.startswith("run `martlet download acme/not-downloaded` (needs the")


def test_a_modelscope_id_not_on_this_machine_says_to_download_it_from_modelscope(
    tmp_path, monkeypatch, martlet_cli
):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    martlet.register_model("ms-only-model", hub_ids={"modelscope": "acme/ms-only"})
    with pytest.raises(ModelLoadError) as info:
        martlet.load_tokenizer("ms-only-model")
    assert "run `martlet download acme/ms-only --hub modelscope`" in info.value.fix
    _repo_for("acme/ms-only", "modelscope")  # which `martlet download` accepts
    text = martlet_cli("model", "info", "ms-only-model").stdout
    assert "fetch it with: martlet download ms-only-model --hub modelscope" in text
    _repo_for("ms-only-model", "modelscope")


def test_an_unknown_model_id_suggests_registered_ones(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(UnknownNameError) as info:
        martlet.load_model("smollm2-135m-instrct")
    assert info.value.what == "unknown model 'smollm2-135m-instrct'"
    assert info.value.why.startswith("did you mean 'smollm2-135m-instruct'")


@pytest.mark.parametrize("name", ["no-such-model-xyz", "gpt2"])
def test_an_unknown_bare_name_never_suggests_a_download_that_would_fail(
    name, tmp_path, monkeypatch
):
    # `martlet download NAME` takes a registered id or an org/name hub id, so for a bare name
    # that is neither it answers "unknown model": the error must not send the user there
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(UnknownNameError) as download_error:
        _repo_for(name, "huggingface")
    with pytest.raises(UnknownNameError) as info:
        martlet.load_model(name)
    assert info.value.what == download_error.value.what == f"unknown model {name!r}"
    assert f"martlet download {name}" not in info.value.message()
    assert info.value.why == (
        f"{name!r} is no registered model id, no local path, and no hub model in the local "
        "Hugging Face cache"
    )
    assert info.value.fix == (
        "`martlet model list` shows the registered ids; or give a local folder, a .gguf file, "
        "or a hub id as org/name (`martlet download org/name` fetches one)"
    )


def fake_hf_cache(root: Path, repo_id: str, files: Path) -> Path:
    """A Hugging Face cache holding ``files`` as the snapshot of ``repo_id``."""
    repo = root / ("models--" + repo_id.replace("/", "--"))
    sha = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(sha)
    shutil.copytree(files, repo / "snapshots" / sha)
    return repo / "snapshots" / sha


def test_a_hub_id_loads_offline_from_the_hugging_face_cache(tiny_model_dir, tmp_path, monkeypatch):
    snapshot = fake_hf_cache(tmp_path / "hf", "acme/tiny-chat", tiny_model_dir)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    model, tokenizer = martlet.load_model("acme/tiny-chat")
    assert type(model).__name__ == "LlamaForCausalLM"
    assert Path(tokenizer.name_or_path) == snapshot
    # a registered id whose hub id is cached resolves the same way
    martlet.register_model("acme-tiny-chat", hub_ids={"huggingface": "acme/tiny-chat"})
    assert Path(martlet.load_tokenizer("acme-tiny-chat").name_or_path) == snapshot


def test_a_hub_id_loads_from_a_martlet_download_folder(
    tiny_model_dir, tmp_path, monkeypatch, isolated_cache
):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    folder = tmp_path / "downloads" / "other"
    shutil.copytree(tiny_model_dir, folder)
    record_download("modelscope", "acme/other", str(folder), revision=None)
    tokenizer = martlet.load_tokenizer("acme/other")
    assert Path(tokenizer.name_or_path) == folder
    shutil.rmtree(folder)  # a record whose folder is gone no longer counts
    with pytest.raises(ModelLoadError, match="is not on this machine"):
        martlet.load_tokenizer("acme/other")


# ---------------------------------------------------------------------- GGUF


def test_gguf_errors(tmp_path):
    with pytest.raises(ModelLoadError) as info:
        martlet.load_model(str(tmp_path / "missing.gguf"))
    assert "not found" in info.value.what
    folder = tmp_path / "folder.gguf"
    folder.mkdir()
    with pytest.raises(ModelLoadError) as info:
        convert_gguf(folder)
    assert "give a .gguf file" in info.value.fix
    junk = tmp_path / "junk.gguf"
    junk.write_text("this is not a model")
    with pytest.raises(MartletError) as info:
        martlet.load_tokenizer(str(junk))
    assert "is not a GGUF file" in info.value.what


def test_the_gguf_cache_key_follows_the_file(tmp_path, shared_cache):
    file = tmp_path / "m.gguf"
    file.write_bytes(b"GGUF" + b"\0" * 20)
    first = gguf_cache_folder(file)
    assert first.parent == shared_cache / "gguf" and first.name.startswith("m-")
    assert gguf_cache_folder(file) == first
    stat = file.stat()
    os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    touched = gguf_cache_folder(file)
    assert touched != first  # a changed file is converted again
    file.write_bytes(b"GGUF" + b"\0" * 21)
    os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert gguf_cache_folder(file) not in (first, touched)


def test_a_gguf_transformers_cannot_read_is_a_clear_error(tmp_path, write_gguf):
    gguf = write_gguf(tmp_path / "odd.gguf", {"general.architecture": "no-such-arch"})
    with pytest.raises(ModelLoadError) as info:
        martlet.load_model(str(gguf))
    assert "transformers cannot load the GGUF file" in info.value.what
    cache = gguf_cache_folder(gguf).parent
    assert not list(cache.glob("odd-*")) and not list(cache.glob(".odd-*"))  # no leftovers


def test_a_folder_with_a_processor_loads_the_processor(tiny_model_dir, tmp_path):
    pytest.importorskip("PIL", reason="image processors need Pillow")
    from martlet_sdk.tiny import tiny_tokenizer
    from transformers import CLIPImageProcessor, LlavaProcessor

    folder = tmp_path / "with-processor"
    shutil.copytree(tiny_model_dir, folder)
    tokenizer = tiny_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    LlavaProcessor(
        image_processor=CLIPImageProcessor(),
        tokenizer=tokenizer,
        patch_size=14,
        chat_template=tokenizer.chat_template,
    ).save_pretrained(folder)
    model, processor = martlet.load_model(str(folder))
    assert type(processor).__name__ == "LlavaProcessor" and processor.tokenizer.is_fast
    # a template takes the processor: it renders with it and tokenizes with its tokenizer
    row = martlet.load_template(processor).encode(
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    )
    labelled = [t for t, label in zip(row["input_ids"], row["labels"], strict=True) if label >= 0]
    assert processor.tokenizer.decode(labelled) == "Hello<|im_end|>"


def test_an_unwritable_cache_is_a_clear_error(tmp_path, monkeypatch, write_gguf):
    gguf = write_gguf(tmp_path / "m.gguf", {"general.architecture": "llama"})
    not_a_folder = tmp_path / "cache-is-a-file"
    not_a_folder.write_text("")
    monkeypatch.setenv("MARTLET_CACHE", str(not_a_folder))
    with pytest.raises(ModelLoadError) as info:
        convert_gguf(gguf)
    assert "cannot write the converted copy of m.gguf" in info.value.what
    assert "MARTLET_CACHE" in info.value.fix
