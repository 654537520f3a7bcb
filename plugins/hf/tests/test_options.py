"""ModelOptions and TemplateOptions: the option groups later commands include."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import martlet
import pytest
from martlet import config as cfg
from martlet.cli import config_command
from martlet.config import option
from martlet.errors import ConfigError
from martlet_hf import ModelOptions, TemplateOptions


@dataclass(kw_only=True)
class JobConfig(ModelOptions, TemplateOptions):
    """What a command that loads a model and encodes chats looks like."""

    epochs: int = option(1, help="Passes over the data.")


def build(*flags: str) -> JobConfig:
    parsed = cfg.parse_flags(JobConfig, list(flags))
    return cfg.build(JobConfig, flags=parsed.values)


def test_defaults():
    job = build("--model", "smollm2")
    assert (job.torch_dtype, job.device_map, job.attn_impl, job.max_memory) == (
        "auto",
        None,
        None,
        None,
    )
    assert job.trust_remote_code is False and job.model_revision is None
    assert (job.template, job.system, job.max_length) == (None, None, None)
    assert (job.truncation_strategy, job.loss_scope) == ("delete", "all")
    assert job.loader_options() == {"torch_dtype": "auto", "trust_remote_code": False}
    assert job.template_options() == {
        "system": None,
        "max_length": None,
        "truncation": "delete",
        "loss_scope": "all",
    }


def test_ms_swift_names_are_aliases():
    job = build(
        "--model_type",
        "qwen2.5-7b-instruct",
        "--attn_implementation",
        "sdpa",
        "--template_type",
        "qwen",
        "--truncation_strategy",
        "left",
        "--revision",
        "main",
    )
    assert job.model == "qwen2.5-7b-instruct" and job.attn_impl == "sdpa"
    assert job.template == "qwen" and job.truncation_strategy == "left"
    assert job.model_revision == "main"
    assert build("--model_id_or_path", "/models/x").model == "/models/x"


def test_every_field():
    job = build(
        "--model",
        "m",
        "--torch-dtype",
        "bfloat16",
        "--device-map",
        "auto",
        "--attn-impl",
        "flash_attn",
        "--max-memory",
        '{"0": "20GiB", "cpu": "64GiB"}',
        "--trust-remote-code",
        "--system",
        "Be kind.",
        "--max-length",
        "2048",
        "--loss-scope",
        "last",
    )
    assert job.loader_options() == {
        "torch_dtype": "bfloat16",
        "trust_remote_code": True,
        "device_map": "auto",
        "attn_impl": "flash_attn",
        "max_memory": {"0": "20GiB", "cpu": "64GiB"},
    }
    assert job.template_options() == {
        "system": "Be kind.",
        "max_length": 2048,
        "truncation": "delete",
        "loss_scope": "last",
    }


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--model", "m", "--torch-dtype", "float8"), "must be one of auto, bfloat16"),
        (("--model", "m", "--truncation-strategy", "middle"), "must be one of delete, left, right"),
        (("--model", "m", "--loss-scope", "first"), "must be one of all, last"),
        (("--model", "m", "--max-length", "0"), "--max-length must be at least 1"),
        (("--model", " "), "--model is empty"),
        ((), "missing required option --model"),
        (("--model", "m", "--loss-scale", "last"), "did you mean --loss-scope?"),
    ],
)
def test_bad_values(flags, message):
    with pytest.raises(ConfigError) as info:
        build(*flags)
    assert message in info.value.message()


def test_field_names_are_unique_across_the_groups():
    def names(cls):
        return {
            n
            for spec in cfg.specs(cls).values()
            for n in (spec.name, *spec.aliases)
            if spec.name in {f.name for f in dataclasses.fields(cls)}
        }

    assert not names(ModelOptions) & names(TemplateOptions)


def test_a_command_built_on_the_groups(martlet_manager, martlet_cli, tiny_model_dir):
    seen = {}

    @config_command(JobConfig, name="job")
    def job(config: JobConfig) -> None:
        """Load a model and encode a chat."""
        model, tokenizer = martlet.load_model(config.model, **config.loader_options())
        template = martlet.load_template(tokenizer, config.template, **config.template_options())
        seen["dtype"] = str(model.dtype)
        seen["row"] = template.encode(
            [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
        )

    class Plugin:
        @martlet.hookimpl
        def martlet_commands(self):
            from martlet.records import CommandRecord

            yield CommandRecord(name="job", impl=f"{__name__}:_JOB", summary="A test job.")

    globals()["_JOB"] = job
    martlet_manager("hf", Plugin())
    result = martlet_cli(
        "job", "--model", str(tiny_model_dir), "--torch_dtype", "bfloat16", "--max-length", "4",
        "--truncation-strategy", "right",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert seen["dtype"] == "torch.bfloat16"
    assert len(seen["row"]["input_ids"]) == 4 and seen["row"]["truncated"] > 0
    help_text = "".join(martlet_cli("job", "--help").stdout.split())  # without line wrapping
    for flag in ("--modelID_OR_PATH", "--model-type", "--template-type", "--attn-implementation"):
        assert flag in help_text
