"""Each tab's command line, built from its form's values: what is shown is what runs, and the
command itself accepts it (parsed and built by its own config class, nothing loaded)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from martlet.errors import ConfigError, UnknownNameError
from martlet_webui import commands
from martlet_webui.commands import (
    EvalForm,
    ExportForm,
    TrainForm,
    chat_argv,
    check_argv,
    eval_argv,
    export_argv,
    train_argv,
)


def test_train_argv_writes_the_choices_and_the_changed_values(martlet_manager):
    martlet_manager("train", "peft")
    form = TrainForm(
        command="sft",
        model="tiny-model",
        datasets=["sample-sft#16", " "],
        tuner="lora",
        output_dir="output/sft-1",
        options={"max_steps": 6.0, "learning_rate": 1e-4, "max_length": "", "logging_steps": 1},
        record_options={"lora_rank": 16, "lora_alpha": 32, "target_modules": "q_proj v_proj"},
    )
    argv = train_argv(form)
    assert argv == [
        "martlet", "sft", "--model", "tiny-model", "--dataset", "sample-sft#16",
        "--tuner", "lora", "--output-dir", "output/sft-1", "--max-steps", "6",
        "--logging-steps", "1", "--target-modules", "q_proj", "v_proj", "--lora-rank", "16",
    ]  # fmt: skip
    shown = "martlet sft --model tiny-model --dataset 'sample-sft#16' --tuner lora"
    assert commands.shell(argv).startswith(shown)
    config = check_argv(argv)  # the command's own parser and config class accept it
    assert (config.max_steps, config.lora_rank) == (6, 16)
    assert config.target_modules == ["q_proj", "v_proj"]
    assert config.dataset == ["sample-sft#16"]


def test_a_plugins_tuner_and_loss_bring_their_options(martlet_manager, acme):
    """A tuner and a loss installed by a third party: their options are written while they
    are chosen (another tuner's are not), and the command accepts them."""
    martlet_manager("train", "peft", acme)
    form = TrainForm(
        command="sft",
        model="m",
        datasets=["sample-sft"],
        tuner="acme-norm",
        objective="acme-weighted",
        record_options={"acme_scale": 2, "acme_bias": True, "acme_weight": 3.0, "lora_rank": 64},
    )
    argv = train_argv(form)
    assert argv[argv.index("--tuner") :] == [
        "--tuner", "acme-norm", "--loss", "acme-weighted",
        "--acme-scale", "2.0", "--acme-bias", "--acme-weight", "3.0",
    ]  # fmt: skip
    config = check_argv(argv)
    assert (config.acme_scale, config.acme_bias, config.acme_weight) == (2.0, True, 3.0)
    with pytest.raises(ConfigError, match="--acme-scale must be more than 0"):
        bad = TrainForm(model="m", tuner="acme-norm", record_options={"acme_scale": -1})
        check_argv(train_argv(bad))


def test_rlhf_names_its_method_and_the_methods_options(martlet_manager):
    martlet_manager("train", "peft", "align")
    form = TrainForm(
        command="rlhf",
        model="m",
        datasets=["sample-dpo"],
        tuner="lora",
        objective="simpo",
        options={"reference_free": False, "teacher_model": ""},
        record_options={"beta": 2.5, "simpo_gamma": 1.0},
    )
    argv = train_argv(form)
    assert argv[argv.index("--tuner") :] == [
        "--tuner", "lora", "--method", "simpo", "--beta", "2.5",
    ]  # fmt: skip
    assert check_argv(argv).beta == 2.5


def test_a_mistake_is_the_commands_own_error(martlet_manager):
    martlet_manager("train", "peft")
    with pytest.raises(ConfigError, match="--lora-rank expects int"):
        train_argv(TrainForm(model="m", tuner="lora", record_options={"lora_rank": "wide"}))
    with pytest.raises(ConfigError, match="missing required option --model"):
        check_argv(train_argv(TrainForm(datasets=["sample-sft"], tuner="lora")))
    with pytest.raises(ConfigError, match="do not split into words"):
        train_argv(TrainForm(model="m", extra="--system 'unclosed"))
    with pytest.raises(UnknownNameError, match="unknown command 'nope'"):
        train_argv(TrainForm(command="nope"))


def test_more_flags_are_appended_as_typed(martlet_manager):
    martlet_manager("train", "peft")
    form = TrainForm(model="m", tuner="full", extra="--system 'You are terse.' --seed 7")
    argv = train_argv(form)
    assert argv[-4:] == ["--system", "You are terse.", "--seed", "7"]
    assert check_argv(argv).system == "You are terse."


def test_chat_argv_is_the_terminal_chat(martlet_manager):
    generation = {"max_new_tokens": 64.0, "temperature": 0.7, "top_p": 0.9}
    assert chat_argv("smollm2-135m-instruct", "", generation) == [
        "martlet", "infer", "--model", "smollm2-135m-instruct",
        "--max-new-tokens", "64", "--temperature", "0.7", "--top-p", "0.9",
    ]  # fmt: skip
    # a run directory carries its base model: --adapters alone
    assert chat_argv("ignored", "output/sft-1", {})[:4] == [
        "martlet",
        "infer",
        "--adapters",
        "output/sft-1",
    ]
    martlet_manager("serve", "engine-pt", "hf")
    assert check_argv(chat_argv("m", "", generation)).max_new_tokens == 64


def test_export_argv(martlet_manager):
    martlet_manager("export", "hqq", "quanto")
    form = ExportForm(
        adapters="output/sft-1",
        output_dir="output/export-1",
        options={"quant_bits": "", "overwrite": False},
    )
    assert export_argv(form) == [
        "martlet", "export", "--adapters", "output/sft-1", "--merge-lora",
        "--output-dir", "output/export-1",
    ]  # fmt: skip
    assert set(commands.export_quantizers()) == {"hqq", "quanto"}
    quantized = ExportForm(
        adapters="output/sft-1",
        output_dir="q",
        quant_method="hqq",
        options={"quant_bits": "4"},
    )
    argv = export_argv(quantized)
    assert argv[4:] == [
        "--merge-lora", "--quant-method", "hqq", "--output-dir", "q", "--quant-bits", "4"
    ]  # fmt: skip
    config = check_argv(argv)
    assert (config.quant_method, config.quant_bits, config.merge_lora) == ("hqq", 4, True)


def test_eval_argv(martlet_manager):
    from martlet.manager import get_manager

    if get_manager().registry.find("commands", "eval") is None:
        pytest.skip("martlet eval (martlet-eval) is not installed")
    martlet_manager("eval")
    form = EvalForm(
        adapters="output/sft-1",
        tasks=["sample-mcq", "sample-arith"],
        output_dir="output/eval-1",
        options={"limit": "8", "num_fewshot": 0, "apply_chat_template": True},
    )
    argv = eval_argv(form)
    assert argv == [
        "martlet", "eval", "--adapters", "output/sft-1", "--tasks", "sample-mcq,sample-arith",
        "--output-dir", "output/eval-1", "--limit", "8", "--apply-chat-template",
    ]  # fmt: skip
    config = check_argv(argv)
    assert config.limit == 8 and config.apply_chat_template is True


def test_the_argv_shown_is_the_argv_run():
    argv = ["martlet", "--plugin", "acme.py", "sft", "--model", "m"]
    assert commands.with_plugins(["martlet", "sft", "--model", "m"], ["acme.py"]) == argv
    assert commands.split(argv) == ("sft", ["--model", "m"])
    run = commands.runnable(argv)
    assert run[-len(argv) + 1 :] == argv[1:]
    assert Path(run[0]).name == "martlet" or run[0] == sys.executable
