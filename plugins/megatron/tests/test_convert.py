"""Hugging Face ⇄ Megatron-Core weight conversion on this CPU: round trips give the same bytes
and logits, the shards have the shapes and the q/k/v interleaving Megatron expects, and the
checkpoint directory has Megatron-LM's layout."""

from __future__ import annotations

import json
from argparse import Namespace
from pathlib import Path

import pytest
import torch
from martlet.errors import ConfigError
from martlet_megatron import convert
from martlet_megatron.families import read_config, shape_of
from safetensors.torch import load_file

CASES = [
    pytest.param("llama", False, id="llama"),
    pytest.param("llama", True, id="llama-tied"),
    pytest.param("qwen2", True, id="qwen2-tied"),
    pytest.param("qwen2", False, id="qwen2"),
    pytest.param("mistral", False, id="mistral"),
]


def logits_of(folder: Path, ids: torch.Tensor) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    with torch.no_grad():
        return model(input_ids=ids).logits


def ids_for(folder: Path) -> torch.Tensor:
    vocab = read_config(folder)["vocab_size"]
    return torch.randint(0, vocab, (2, 17), generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize(("family", "tied"), CASES)
@pytest.mark.parametrize("layout", ["te", "local"])
def test_round_trip_tp2_pp2_gives_the_same_bytes_and_logits(
    make_model, tmp_path, family, tied, layout
):
    source = make_model(family, tied=tied)
    mcore = convert.to_mcore(source, tmp_path / "mcore", tp=2, pp=2, layout=layout)
    back = convert.to_hf(mcore, tmp_path / "hf")

    want, got = (
        load_file(str(source / "model.safetensors")),
        load_file(str(back / "model.safetensors")),
    )
    assert sorted(got) == sorted(want)
    for name, tensor in want.items():
        assert got[name].dtype == tensor.dtype and got[name].shape == tensor.shape, name
        assert got[name].numpy().tobytes() == tensor.numpy().tobytes(), name
    assert read_config(back) == read_config(source)
    ids = ids_for(source)
    assert torch.equal(logits_of(back, ids), logits_of(source, ids))
    from transformers import AutoTokenizer

    text = "What is the capital of France?"
    assert AutoTokenizer.from_pretrained(str(back))(text) == AutoTokenizer.from_pretrained(
        str(source)
    )(text)


def test_bfloat16_keeps_its_bytes(make_model, tmp_path):
    source = make_model("qwen2", dtype="bfloat16")
    back = convert.to_hf(convert.to_mcore(source, tmp_path / "m", tp=2), tmp_path / "hf")
    want, got = (
        load_file(str(source / "model.safetensors")),
        load_file(str(back / "model.safetensors")),
    )
    assert all(got[k].dtype == torch.bfloat16 and torch.equal(got[k], want[k]) for k in want)


def test_checkpoint_directory_has_megatron_lms_layout(make_model, tmp_path):
    source = make_model("llama")
    out = convert.to_mcore(source, tmp_path / "mcore", tp=2, pp=2)
    assert (out / "latest_checkpointed_iteration.txt").read_text() == "1"
    ranks = sorted(p.name for p in (out / "iter_0000001").iterdir())
    assert ranks == ["mp_rank_00_000", "mp_rank_00_001", "mp_rank_01_000", "mp_rank_01_001"]
    data = torch.load(
        out / "iter_0000001" / "mp_rank_01_001" / "model_optim_rng.pt", weights_only=False
    )
    assert data["checkpoint_version"] == 3.0 and data["iteration"] == 1
    args = data["args"]
    assert isinstance(args, Namespace)
    assert (args.tensor_model_parallel_size, args.pipeline_model_parallel_size) == (2, 2)
    assert (args.num_layers, args.hidden_size, args.num_attention_heads) == (4, 96, 4)
    assert args.num_query_groups == 2 and args.group_query_attention
    assert args.padded_vocab_size == 512 and args.swiglu and args.normalization == "RMSNorm"
    assert args.untie_embeddings_and_output_weights
    meta = json.loads((out / "martlet_megatron.json").read_text())
    assert meta["tensor_model_parallel_size"] == 2 and meta["layout"] == "te"
    one_stage = convert.to_mcore(source, tmp_path / "tp2", tp=2)
    assert sorted(p.name for p in (one_stage / "iter_0000001").iterdir()) == [
        "mp_rank_00",
        "mp_rank_01",
    ]


@pytest.mark.parametrize(("family", "tied"), CASES)
def test_shards_have_the_shapes_megatron_expects(make_model, family, tied):
    folder = make_model(family, tied=tied)
    shape = shape_of(read_config(folder))
    state = convert.read_hf_weights(folder)
    tp, pp = 2, 2
    shards = convert.hf_to_mcore(state, shape, tp=tp, pp=pp, divisible_by=128)
    heads, groups, d, hidden = 4, 2, 24, 96
    vocab_rows = shape.padded_vocab(tp) // tp
    assert shape.padded_vocab(tp) % (128 * tp) == 0 and shape.padded_vocab(tp) >= shape.vocab_size
    for (stage, _), shard in shards.items():
        layer = "decoder.layers.1."
        assert shard[layer + "self_attention.linear_qkv.weight"].shape == (
            (heads + 2 * groups) * d // tp,
            hidden,
        )
        if shape.qkv_bias:
            assert shard[layer + "self_attention.linear_qkv.bias"].shape == (
                (heads + 2 * groups) * d // tp,
            )
        else:
            assert layer + "self_attention.linear_qkv.bias" not in shard
        assert shard[layer + "self_attention.linear_proj.weight"].shape == (hidden, heads * d // tp)
        assert shard[layer + "mlp.linear_fc1.weight"].shape == (2 * 256 // tp, hidden)
        assert shard[layer + "mlp.linear_fc2.weight"].shape == (hidden, 256 // tp)
        assert shard[layer + "self_attention.linear_qkv.layer_norm_weight"].shape == (hidden,)
        assert shard[layer + "mlp.linear_fc1.layer_norm_weight"].shape == (hidden,)
        assert "decoder.layers.2.self_attention.linear_qkv.weight" not in shard  # 2 per stage
        assert ("embedding.word_embeddings.weight" in shard) == (stage == 0)
        assert ("decoder.final_layernorm.weight" in shard) == (stage == 1)
        # tied embeddings: the last stage keeps its own copy of the output layer (pp > 1)
        assert ("output_layer.weight" in shard) == (stage == 1)
        for name in ("embedding.word_embeddings.weight", "output_layer.weight"):
            if name in shard:
                assert shard[name].shape == (vocab_rows, hidden)
        assert shard[layer + "self_attention.linear_qkv._extra_state"] is None
    one = convert.hf_to_mcore(state, shape, tp=1, pp=1)[(0, 0)]
    assert ("output_layer.weight" in one) == (not tied)
    assert "output_layer._extra_state" in one


def test_qkv_interleaving_matches_a_reference_built_head_by_head(make_model):
    """Megatron's linear_qkv, rank by rank: for each query group this rank owns, the group's
    query heads, then its key head, then its value head (built here head by head)."""
    folder = make_model("qwen2")
    shape = shape_of(read_config(folder))
    state = convert.read_hf_weights(folder)
    tp, heads, groups, d = 2, 4, 2, 24
    per_group, groups_per_rank = heads // groups, groups // tp
    shards = convert.hf_to_mcore(state, shape, tp=tp)
    for layer in range(4):
        hf = f"model.layers.{layer}.self_attn."
        for kind in ("weight", "bias"):
            q, k, v = (state[f"{hf}{x}_proj.{kind}"] for x in "qkv")
            for rank in range(tp):
                rows = []
                for g in range(rank * groups_per_rank, (rank + 1) * groups_per_rank):
                    for h in range(g * per_group, (g + 1) * per_group):
                        rows.append(q[h * d : (h + 1) * d])
                    rows.append(k[g * d : (g + 1) * d])
                    rows.append(v[g * d : (g + 1) * d])
                name = f"decoder.layers.{layer}.self_attention.linear_qkv.{kind}"
                assert torch.equal(shards[(0, rank)][name], torch.cat(rows)), (name, rank)


def test_fc1_holds_this_ranks_gate_then_up_and_row_parallel_splits_columns(make_model):
    folder = make_model("llama")
    shape = shape_of(read_config(folder))
    state = convert.read_hf_weights(folder)
    shards = convert.hf_to_mcore(state, shape, tp=2)
    gate, up = (
        state["model.layers.0.mlp.gate_proj.weight"],
        state["model.layers.0.mlp.up_proj.weight"],
    )
    down, o = (
        state["model.layers.0.mlp.down_proj.weight"],
        state["model.layers.0.self_attn.o_proj.weight"],
    )
    for rank in range(2):
        shard = shards[(0, rank)]
        want = torch.cat((gate[rank * 128 : (rank + 1) * 128], up[rank * 128 : (rank + 1) * 128]))
        assert torch.equal(shard["decoder.layers.0.mlp.linear_fc1.weight"], want)
        assert torch.equal(
            shard["decoder.layers.0.mlp.linear_fc2.weight"], down[:, rank * 128 : (rank + 1) * 128]
        )
        assert torch.equal(
            shard["decoder.layers.0.self_attention.linear_proj.weight"],
            o[:, rank * 48 : (rank + 1) * 48],
        )
    embed = state["model.embed_tokens.weight"]
    padded = convert.hf_to_mcore(state, shape, tp=2, divisible_by=300)  # 600 rows, 300 a rank
    first, second = (padded[(0, r)]["embedding.word_embeddings.weight"] for r in range(2))
    assert first.shape == second.shape == (300, 96)
    assert torch.equal(torch.cat((first, second))[: embed.shape[0]], embed)
    assert not torch.cat((first, second))[embed.shape[0] :].any()  # zero padding rows


def test_a_saved_shard_holds_only_its_own_bytes(make_model, tmp_path):
    source = make_model("llama")
    whole = (source / "model.safetensors").stat().st_size
    out = convert.to_mcore(source, tmp_path / "m", tp=2, pp=2)
    sizes = [p.stat().st_size for p in out.glob("iter_0000001/*/model_optim_rng.pt")]
    assert max(sizes) < 0.45 * whole


def test_refusals_say_what_to_do(make_model, tmp_path):
    source = make_model("llama")
    with pytest.raises(ConfigError, match="does not divide the model's 2 key/value heads") as e:
        convert.to_mcore(source, tmp_path / "a", tp=4)
    assert "1, 2" in e.value.fix
    with pytest.raises(ConfigError, match="does not divide the model's 4 layers"):
        convert.to_mcore(source, tmp_path / "b", pp=3)
    out = convert.to_mcore(source, tmp_path / "c", tp=2)
    with pytest.raises(ConfigError, match="is not empty"):
        convert.to_mcore(source, tmp_path / "c", tp=2)
    convert.to_mcore(source, tmp_path / "c", tp=2, overwrite=True)
    (out / "iter_0000001" / "mp_rank_01" / "model_optim_rng.pt").unlink()
    with pytest.raises(ConfigError, match="missing ranks"):
        convert.to_hf(out, tmp_path / "d")
    with pytest.raises(ConfigError, match="not a Megatron checkpoint"):
        convert.to_hf(source, tmp_path / "e")
    gpt2 = tmp_path / "gpt2"
    gpt2.mkdir()
    (gpt2 / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(ConfigError, match="does not support model type 'gpt2'") as e:
        convert.to_mcore(gpt2, tmp_path / "f")
    assert "Llama (llama), Qwen2 (qwen2), Mistral (mistral)" in e.value.why


def test_pickled_arguments_need_allow_pickle(make_model, tmp_path):
    """Megatron-LM's own checkpoints store arbitrary objects in ``args``: refused unless the
    user trusts them."""
    source = make_model("llama")
    out = convert.to_mcore(source, tmp_path / "m")
    path = out / "iter_0000001" / "mp_rank_00" / "model_optim_rng.pt"
    data = torch.load(path, weights_only=False)
    data["args"].extra = Path("x")  # any class the safe loader does not know
    torch.save(data, path)
    with pytest.raises(ConfigError, match="allow-pickle"):
        convert.to_hf(out, tmp_path / "a")
    convert.to_hf(out, tmp_path / "b", allow_pickle=True)


def test_the_convert_command_both_ways(make_model, tmp_path, martlet_manager, martlet_cli):
    martlet_manager("megatron")
    source = make_model("qwen2", tied=True)
    result = martlet_cli(
        "megatron", "convert", "--model", str(source), "--to", "mcore",
        "--output-dir", str(tmp_path / "m"),
        "--tensor-model-parallel-size", "2", "--pipeline-model-parallel-size", "2",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "tensor parallel 2, pipeline parallel 2" in result.output
    # ms-swift's spelling
    result = martlet_cli(
        "megatron", "convert", "--mcore_model", str(tmp_path / "m"), "--to_hf", "true",
        "--output_dir", str(tmp_path / "hf"),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    ids = ids_for(source)
    assert torch.equal(logits_of(tmp_path / "hf", ids), logits_of(source, ids))
    result = martlet_cli("megatron", "convert", "--model", str(source), "--output-dir", "x")
    assert result.exit_code != 0 and "say which format to write" in result.output
    result = martlet_cli(
        "megatron", "convert", "--model", str(source), "--to", "mcore", "--output-dir", "x",
        "--tensor-model-parallel-size", "0",
    )  # fmt: skip
    assert result.exit_code != 0
    assert "--tensor-model-parallel-size must be a whole number of at least 1" in result.output
