"""A record's options, from a plugin installed beside Martlet: its flags appear in `martlet
sft --tuner NAME --help` under its own group, their values reach the record in a real
training run and are written under the record in `config.yaml`, and the options of a tuner
that was not selected are refused with the name of the one that takes them."""

from __future__ import annotations

import json

import pytest
import yaml

PLUGIN = """
    from martlet import hookimpl
    from martlet.records import LossRecord, TunerRecord

    MARTLET_API = 1

    @hookimpl
    def martlet_tuners():
        yield TunerRecord(
            name="acme-norm",
            impl="acme_tuners_impl:NormTuner",
            summary="Trains the final norm only.",
            capabilities={"train", "cpu"},
            options="acme_tuners_options:NormOptions",
            saves=("norm.safetensors", "acme.json"),
        )

    @hookimpl
    def martlet_losses():
        yield LossRecord(
            name="acme-weighted",
            impl="acme_tuners_impl:weighted_loss",
            data="messages",
            summary="Cross-entropy on the targets, times a weight.",
            options="acme_tuners_options:WeightedOptions",
        )
"""

OPTIONS = """
    from dataclasses import dataclass

    from martlet.config import option, require


    @dataclass(kw_only=True)
    class NormOptions:
        \"\"\"Acme's norm tuner: only the final norm trains\"\"\"

        acme_scale: float = option(1.0, help="Multiply the norm's weight by this first.")
        acme_tag: str = option("plain", help="A label written beside the result.")

        def __post_init__(self):
            require(self.acme_scale > 0, "acme-scale", self.acme_scale, "more than 0", "2")


    @dataclass(kw_only=True)
    class WeightedOptions:
        \"\"\"Acme's weighted cross-entropy\"\"\"

        acme_weight: float = option(1.0, help="Multiply the summed loss by this.")
"""

IMPL = """
    import json
    from pathlib import Path

    import torch
    from safetensors.torch import load_file, save_file


    class NormTuner:
        def prepare(self, model, config):
            model.requires_grad_(False)
            norm = model.model.norm
            with torch.no_grad():
                norm.weight.mul_(config.acme_scale)
            norm.weight.requires_grad_(True)
            self.seen = {"acme_scale": config.acme_scale, "acme_tag": config.acme_tag}
            return model

        def save(self, model, output_dir):
            save_file({"norm.weight": model.model.norm.weight.detach().contiguous()},
                      str(Path(output_dir) / "norm.safetensors"))
            (Path(output_dir) / "acme.json").write_text(json.dumps(self.seen))

        def load(self, model, path):
            weights = load_file(str(Path(path) / "norm.safetensors"))
            with torch.no_grad():
                model.model.norm.weight.copy_(weights["norm.weight"])
            return model

        def merge(self, model):
            return model


    def weighted_loss(model, batch, *, acme_weight):
        logits = model(input_ids=batch["input_ids"]).logits[:, :-1]
        labels = batch["labels"][:, 1:]
        keep = labels != -100
        loss = torch.nn.functional.cross_entropy(
            logits[keep].float(), labels[keep], reduction="sum"
        )
        return loss * acme_weight, keep.sum(), {"acme_weight": (float(acme_weight), 1)}
"""


@pytest.fixture(scope="module")
def acme(tmp_path_factory, fake_site_factory):
    site = fake_site_factory(tmp_path_factory.mktemp("acme"))
    site.dist(
        "acme-tuners",
        "1.2",
        entry_points={"acme": "acme_tuners"},
        modules={
            "acme_tuners": PLUGIN,
            "acme_tuners_options": OPTIONS,
            "acme_tuners_impl": IMPL,
        },
    )
    return site


def _train(martlet, site, model_dir, out, *extra):
    """Two steps of `martlet sft` on the tiny model with the acme plugin installed."""
    return martlet(
        "sft",
        "--model", str(model_dir),
        "--dataset", "sample-sft#8",
        "--max-steps", "2",
        "--max-length", "64",
        "--output-dir", str(out),
        "--disable-progress-bar",
        *extra,
        site=site,
    )  # fmt: skip


def test_the_plugins_options_appear_in_help_under_its_name(acme, martlet):
    plain = martlet("sft", "--help", site=acme)
    assert plain.rc == 0, plain
    assert "acme-norm" in plain.out  # among the installed tuners
    assert "--acme-scale" not in plain.out  # lora is the default tuner: its options show
    assert "--lora-rank" in plain.out
    assert "`martlet sft --tuner NAME --help` shows them" in plain.out
    chosen = martlet("sft", "--tuner", "acme-norm", "--help", site=acme)
    assert chosen.rc == 0, chosen
    group = chosen.out.split("Acme's norm tuner: only the final norm trains (acme-tuners):")
    assert len(group) == 2, chosen
    assert "--acme-scale FLOAT" in group[1] and "--acme-tag TEXT" in group[1]
    assert "--lora-rank" not in chosen.out  # lora's options are not this tuner's
    # the groups are titled by the plugins that declare them
    for title in ("(martlet-train):", "(martlet-core):"):
        assert title in chosen.out, title
    assert "(martlet-peft):" not in chosen.out  # not even NEFTune: acme-norm does not read it


def test_its_option_values_reach_the_record_in_a_run(acme, martlet, tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    result = _train(
        martlet, acme, tiny_model_dir, out,
        "--tuner", "acme-norm", "--acme-scale", "2.5", "--acme_tag", "from-the-cli",
    )  # fmt: skip
    assert result.rc == 0, result
    assert json.loads((out / "acme.json").read_text()) == {
        "acme_scale": 2.5,
        "acme_tag": "from-the-cli",
    }
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["tuner"] == {"name": "acme-norm", "acme_scale": 2.5, "acme_tag": "from-the-cli"}
    assert "lora_rank" not in json.dumps(config)  # no options of a tuner it did not use
    # the run's config reads back: the same options from YAML
    again = martlet("sft", "--config", str(out / "config.yaml"), "--print-config", site=acme)
    assert again.rc == 0, again
    assert yaml.safe_load(again.out)["tuner"] == config["tuner"]
    # the files its record says save() writes are checked before the run loads
    (out / "norm.safetensors").unlink()
    damaged = martlet("infer", "--adapters", str(out), "--query", "hi", site=acme)
    assert damaged.rc != 0 and "Traceback" not in damaged.err
    assert f"{out / 'norm.safetensors'} is missing" in damaged.err, damaged


def test_options_of_another_tuner_and_bad_values_are_refused(acme, martlet, tmp_path):
    common = ("sft", "--model", str(tmp_path / "none"), "--print-config")
    wrong = martlet(*common, "--tuner", "acme-norm", "--lora-rank", "4", site=acme)
    assert wrong.rc != 0 and "Traceback" not in wrong.err
    assert "--lora-rank is an option of tuner lora (martlet-peft), not of tuner 'acme-norm'" in (
        wrong.err
    )
    other = martlet(*common, "--acme-scale", "2", site=acme)
    assert other.rc != 0
    assert "--acme-scale is an option of tuner acme-norm (acme-tuners), not of tuner 'lora'" in (
        other.err
    )
    assert "--tuner acme-norm" in other.err
    bad = martlet(*common, "--tuner", "acme-norm", "--acme-scale", "-1", site=acme)
    assert bad.rc != 0 and "--acme-scale must be more than 0, not -1.0" in bad.err
    typed = martlet(*common, "--tuner", "acme-norm", "--acme-scale", "big", site=acme)
    assert typed.rc != 0 and "--acme-scale expects float, got 'big'" in typed.err
    noise = martlet(*common, "--tuner", "acme-norm", "--neftune-noise-alpha", "5", site=acme)
    assert noise.rc != 0 and "--neftune-noise-alpha is an option of tuners" in noise.err
    assert "(martlet-peft), not of tuner 'acme-norm'" in noise.err


def test_a_plugins_loss_is_selected_with_its_options(acme, martlet, tiny_model_dir, tmp_path):
    help_text = martlet("sft", "--loss", "acme-weighted", "--help", site=acme)
    assert "Acme's weighted cross-entropy (acme-tuners):" in help_text.out, help_text
    assert "--acme-weight FLOAT" in help_text.out
    out = tmp_path / "run"
    result = _train(
        martlet, acme, tiny_model_dir, out,
        "--loss", "acme-weighted", "--acme-weight", "0.25", "--logging-steps", "1",
    )  # fmt: skip
    assert result.rc == 0, result
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [m for m in logged if "loss" in m and "step" in m]
    assert steps and all(m["acme_weight"] == 0.25 for m in steps), logged
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["loss"] == {"name": "acme-weighted", "acme_weight": 0.25}
    # a loss that is not called with a batch is refused, saying where it trains
    wrong = martlet("sft", "--model", "m", "--loss", "acme-weighted", "--beta", "1", site=acme)
    assert wrong.rc != 0 and "--beta" in wrong.err


def test_an_option_of_a_disabled_or_unlisted_distribution_names_it(martlet):
    """Options no plugin in use declares come from the core's index of known options: the
    distribution that takes them, and how to get it in use (a distribution that is not
    installed at all: `test_an_uninstalled_third_party_option_is_named_from_an_installed_table`)."""
    off = martlet(
        "rlhf", "--model", "x", "--beta", "0.1", "--print-config",
        env={"MARTLET_DISABLE_PLUGINS": "martlet-align"},
    )  # fmt: skip
    assert off.rc != 0 and "Traceback" not in off.err
    assert "flag --beta is not available" in off.err, off
    assert "from martlet-align, installed but disabled by MARTLET_DISABLE_PLUGINS" in off.err
    assert "unset MARTLET_DISABLE_PLUGINS" in off.err
    unlisted = martlet(
        "sft", "--model", "x", "--deepspeed", "zero2", "--print-config",
        env={"MARTLET_PLUGINS": "train,hf,data,peft,accel"},
    )  # fmt: skip
    assert unlisted.rc != 0 and "Traceback" not in unlisted.err
    assert "the deepspeed parallel strategy, from martlet-deepspeed, installed but not listed" in (
        unlisted.err
    )
    assert "MARTLET_PLUGINS=accel,data,deepspeed,hf,peft,train" in unlisted.err
    on = martlet("sft", "--model", "x", "--deepspeed", "zero2", "--print-config")
    assert on.rc == 0, on


# ---------------------------------------------------- model loaders, templates, sources, callbacks


def test_a_plugins_loader_template_source_and_callback_take_their_options(
    acme_parts, martlet, tiny_model_dir, tmp_path
):
    """Each selected record gets its own options in a real run, they are written under it in
    config.yaml, and `infer --adapters` loads the run again with the same loader and template."""
    out = tmp_path / "run"
    result = martlet(
        "sft",
        "--model", str(tiny_model_dir),
        "--model-loader", "acme-loader", "--acme-note", "from-the-cli",
        "--template", "acme-chat", "--acme-prefix", "##",
        "--dataset", "acme-rows:6", "--dataset-source", "acme-rows", "--acme-answer", "Zed",
        "--report-to", "acme-log", "--acme-log-name", "mine.jsonl",
        "--max-steps", "2", "--logging-steps", "1", "--max-length", "64",
        "--output-dir", str(out), "--disable-progress-bar",
        site=acme_parts,
    )  # fmt: skip
    assert result.rc == 0, result
    for said in ("acme-loader: note=from-the-cli", "acme-chat: prefix=##", "acme-rows: answer=Zed"):
        assert said in result.out, said
    logged = [json.loads(line) for line in (out / "mine.jsonl").read_text().splitlines()]
    assert [m["step"] for m in logged if "loss" in m] == [1, 2], logged
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["model_loader"] == {"name": "acme-loader", "acme_note": "from-the-cli"}
    assert config["template"] == {"name": "acme-chat", "acme_prefix": "##"}
    assert config["dataset_source"] == {"name": "acme-rows", "acme_answer": "Zed"}
    assert config["acme_log_name"] == "mine.jsonl"  # a list selector's options stay flat
    again = martlet(
        "infer",
        "--adapters",
        str(out),
        "--query",
        "hello",
        "--max-new-tokens",
        "2",
        site=acme_parts,
    )
    assert again.rc == 0, again
    assert "acme-loader: note=from-the-cli" in again.err  # what prints as the model loads:
    # infer keeps stdout for the answers
    assert "acme-chat: prefix=##" in again.err


def test_their_options_need_their_selection_and_show_in_help(acme_parts, martlet, tmp_path):
    common = ("sft", "--model", str(tmp_path / "none"), "--dataset", "x", "--print-config")
    for flag, value, selector in (
        ("--acme-note", "n", "--model-loader acme-loader"),
        ("--acme-prefix", "#", "--template acme-chat"),
        ("--acme-answer", "a", "--dataset-source acme-rows"),
        ("--acme-log-name", "f", "--report-to acme-log"),
    ):
        refused = martlet(*common, flag, value, site=acme_parts)
        assert refused.rc != 0 and "Traceback" not in refused.err, refused
        assert f"{flag} is an option of" in refused.err and "(acme-parts)" in refused.err
        assert f"pass {selector}" in refused.err, refused.err
    shown = martlet(
        "sft", "--model-loader", "acme-loader", "--template", "acme-chat", "--help", site=acme_parts
    )
    assert "Acme's loader (acme-parts):" in shown.out and "--acme-note TEXT" in shown.out
    assert "Acme's chat lines (acme-parts):" in shown.out and "--acme-prefix TEXT" in shown.out
    plain = martlet("sft", "--help", site=acme_parts)
    assert "--acme-note" not in plain.out
    said = " ".join(plain.out.split())
    assert "Each model loader has its own options: `martlet sft --model-loader NAME --help`" in said


def test_an_uninstalled_third_party_option_is_named_from_an_installed_table(
    martlet, fake_site_factory, tmp_path
):
    """An installed distribution (a vendor's catalog) lists the options of plugins it knows in
    the `martlet.known_options` entry points: with acme-tuners itself not installed, its flag
    says which package to install; a broken table changes nothing but the message."""
    site = fake_site_factory(tmp_path / "site")
    site.dist(
        "acme-catalog",
        "1.0",
        entry_points={},
        modules={
            "acme_catalog": 'OPTIONS = {"acme_scale": ("acme-tuners", "tuner acme-norm")}\n',
            "acme_broken": "raise RuntimeError('no table here')\n",
        },
        groups={"martlet.known_options": {"acme": "acme_catalog:OPTIONS", "bad": "acme_broken:X"}},
    )
    result = martlet("sft", "--model", "m", "--acme-scale", "2", "--print-config", site=site)
    assert result.rc != 0 and "Traceback" not in result.err
    assert "flag --acme-scale is not an option of this command" in result.err, result
    assert "tuner acme-norm, from acme-tuners, which is not installed" in result.err
    assert "pip install acme-tuners" in result.err
    other = martlet("sft", "--model", "m", "--acme-tag", "x", "--print-config", site=site)
    assert other.rc != 0 and "unknown flag --acme-tag" in other.err
