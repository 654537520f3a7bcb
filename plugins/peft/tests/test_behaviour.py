"""What the contract does not cover: each method's own promise and its errors."""

from __future__ import annotations

import pytest
import torch
from martlet.errors import ConfigError
from martlet_peft.base import enable_neftune, linear_module_names
from martlet_peft.full import FreezeTuner, LisaTuner
from martlet_peft.llamapro import LlamaProTuner
from martlet_peft.options import TunerOptions
from martlet_peft.peft_methods import AdaLoraTuner, LoraTuner, PromptTuningTuner
from martlet_peft.reft import ReftTuner
from martlet_sdk.contracts.tuner import _batch, _logits


@pytest.fixture
def batch(tiny_tokenizer):
    return _batch(tiny_tokenizer)


def test_all_linear_means_every_linear_layer_but_the_head(tiny_model):
    names = linear_module_names(tiny_model, ["all-linear"])
    assert names == ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]
    assert linear_module_names(tiny_model, ["q_proj"]) == ["q_proj"]


def test_llamapro_blocks_start_as_the_identity(tiny_model, batch):
    expected = _logits(tiny_model, batch)
    model = LlamaProTuner().prepare(tiny_model, TunerOptions(llamapro_num_new_blocks=2))
    assert model.config.num_hidden_layers == 4
    torch.testing.assert_close(_logits(model, batch), expected, atol=1e-5, rtol=1e-5)
    trainable = {n.split(".")[2] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"1", "3"}  # the inserted blocks, after each original one
    out = model.generate(batch["input_ids"][:1], max_new_tokens=3, do_sample=False)
    assert out.shape[1] == batch["input_ids"].shape[1] + 3  # the KV cache knows the new layers


def test_llamapro_refuses_a_block_count_that_does_not_divide_the_layers(tiny_model):
    with pytest.raises(ConfigError, match="must divide the model's 2 layers"):
        LlamaProTuner().prepare(tiny_model, TunerOptions(llamapro_num_new_blocks=3))


def test_neftune_adds_noise_only_while_training(tiny_model, batch):
    base = _logits(tiny_model, batch)
    enable_neftune(tiny_model, 5.0)
    torch.testing.assert_close(_logits(tiny_model, batch), base)  # eval: no noise
    tiny_model.train()
    emb = tiny_model.get_input_embeddings()
    a, b = emb(batch["input_ids"]), emb(batch["input_ids"])
    assert not torch.equal(a, b)
    bound = 5.0 / (a.shape[-2] * a.shape[-1]) ** 0.5
    clean = emb.weight[batch["input_ids"]]
    assert (a - clean).abs().max() <= bound + 1e-6
    with pytest.raises(ConfigError, match="must be positive"):
        enable_neftune(tiny_model, 0)


def test_neftune_option_applies_to_any_tuner(tiny_model):
    model = FreezeTuner().prepare(
        tiny_model, TunerOptions(trainable_layers=1, neftune_noise_alpha=5.0)
    )
    assert model.get_input_embeddings()._forward_hooks


def test_freeze_needs_something_to_train_and_valid_regexes(tiny_model):
    with pytest.raises(ConfigError, match="needs to know what to train"):
        FreezeTuner().prepare(tiny_model, TunerOptions())
    with pytest.raises(ConfigError, match="bad regular expression"):
        FreezeTuner().prepare(tiny_model, TunerOptions(trainable_parameters=["(("]))
    with pytest.raises(ConfigError, match="matches no parameter"):
        FreezeTuner().prepare(tiny_model, TunerOptions(trainable_parameters=["nothing_here"]))
    with pytest.raises(ConfigError, match="more than the model's 2 layers"):
        FreezeTuner().prepare(tiny_model, TunerOptions(trainable_layers=5))


def test_freeze_trains_exactly_the_last_layers(tiny_model):
    model = FreezeTuner().prepare(tiny_model, TunerOptions(trainable_layers=1))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("model.layers.1.") for n in trainable)


def test_lisa_resamples_the_active_layers(tiny_model):
    tuner = LisaTuner()
    model = tuner.prepare(tiny_model, TunerOptions(lisa_activated_layers=1, lisa_step_interval=1))
    seen = set()
    for step in range(1, 20):
        tuner.on_step(model, step)
        active = {
            i
            for i, layer in enumerate(model.model.layers)
            if all(p.requires_grad for p in layer.parameters())
        }
        assert len(active) == 1
        seen |= active
    assert seen == {0, 1}
    assert model.model.embed_tokens.weight.requires_grad and model.lm_head.weight.requires_grad


def test_lora_variants_reach_peft(tiny_model):
    cfg = TunerOptions(lora_rank=4, use_rslora=True, use_dora=True, target_modules=["q_proj"])
    model = LoraTuner().prepare(tiny_model, cfg)
    pc = model.peft_config["default"]
    assert pc.use_rslora and pc.use_dora and pc.r == 4 and set(pc.target_modules) == {"q_proj"}


@pytest.mark.parametrize("init", ["pissa_niter_2", "olora", "gaussian"])
def test_lora_initialisations_keep_the_model_function(tiny_tokenizer, batch, init):
    from martlet_sdk.tiny import tiny_model

    base = tiny_model(tokenizer=tiny_tokenizer)
    expected = _logits(base, batch)
    model = LoraTuner().prepare(base, TunerOptions(init_weights=init, lora_dropout=0.0))
    # PiSSA and OLoRA move the principal part of W into A and B: the function is unchanged
    atol = 1e-4 if init != "gaussian" else 1e-6
    torch.testing.assert_close(_logits(model, batch), expected, atol=atol, rtol=1e-4)


def test_unknown_lora_init_is_a_clear_error(tiny_model):
    with pytest.raises(ConfigError, match="unknown LoRA initialisation 'svd'"):
        LoraTuner().prepare(tiny_model, TunerOptions(init_weights="svd"))


def test_lora_plus_gives_b_matrices_a_larger_learning_rate(tiny_model):
    from dataclasses import dataclass

    @dataclass(kw_only=True)
    class Cfg(TunerOptions):
        learning_rate: float = 1e-3
        weight_decay: float = 0.0

    tuner = LoraTuner()
    model = tuner.prepare(tiny_model, Cfg(lora_plus_ratio=16))
    optimizer = tuner.create_optimizer(model, Cfg(lora_plus_ratio=16))
    rates = {g["lr"] for g in optimizer.param_groups if g["params"]}
    assert rates == {1e-3, 16e-3}
    assert LoraTuner().create_optimizer(model, Cfg()) is None


def test_adalora_needs_the_step_count(tiny_model):
    with pytest.raises(ConfigError, match="total number of training steps"):
        AdaLoraTuner().prepare(tiny_model, TunerOptions())


def test_prompt_tuning_cannot_merge(tiny_model):
    tuner = PromptTuningTuner()
    model = tuner.prepare(tiny_model, TunerOptions(num_virtual_tokens=2))
    with pytest.raises(ConfigError, match="cannot be merged"):
        tuner.merge(model)


def test_reft_keeps_its_subspace_orthonormal_and_the_base_frozen(tiny_model):
    model = ReftTuner().prepare(tiny_model, TunerOptions(reft_rank=3, reft_layers=[1]))
    r = model.martlet_reft["1"].rotation()
    torch.testing.assert_close(r @ r.T, torch.eye(3), atol=1e-5, rtol=0)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith("martlet_reft.") for n in trainable)
    with pytest.raises(ConfigError, match="are not layers"):
        ReftTuner().prepare(tiny_model, TunerOptions(reft_layers=[7]))


def test_saved_lora_adapter_is_plain_peft(tiny_model, tmp_path):
    from peft import PeftModel

    tuner = LoraTuner()
    model = tuner.prepare(tiny_model, TunerOptions())
    tuner.save(model, str(tmp_path))
    assert (tmp_path / "adapter_model.safetensors").is_file()
    assert (tmp_path / "adapter_config.json").is_file()
    from martlet_sdk.tiny import tiny_model as make

    loaded = PeftModel.from_pretrained(make(), str(tmp_path))
    assert loaded.peft_config["default"].r == 8
