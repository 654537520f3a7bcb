"""`martlet infer --task reward`: scores from a full reward model folder and from a LoRA reward
run directory equal the ones computed by hand; batches of conversation and preference rows;
bad requests are clear errors."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

PLUGINS = ("serve", "hf", "data", "peft", "engine-pt", "accel")
QUERY, GOOD, BAD = "What is the capital of France?", "The capital is Paris.", "Blue."


@pytest.fixture
def cli(martlet_manager, martlet_cli):
    martlet_manager(*PLUGINS)
    return martlet_cli


def conversation(query, response=None):
    messages = [{"role": "user", "content": query}]
    if response is not None:
        messages.append({"role": "assistant", "content": response})
    return messages


def by_hand(model, tokenizer, conversations):
    """Each conversation scored alone: the template's tokens, the head at the last one."""
    import martlet
    from martlet.heads import sequence_scores

    template = martlet.load_template(tokenizer)
    out = []
    model.eval()
    for messages in conversations:
        ids = torch.tensor([template.encode(messages)["input_ids"]])
        with torch.no_grad():
            out.append(float(sequence_scores(model, ids, torch.ones_like(ids))[0]))
    return out


@pytest.fixture(scope="module")
def reward_dir(tmp_path_factory):
    """A full reward model folder (LlamaForSequenceClassification, one output) + tokenizer."""
    from martlet_sdk.tiny import tiny_config, tiny_tokenizer
    from transformers import AutoModelForSequenceClassification

    tokenizer = tiny_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = AutoModelForSequenceClassification.from_config(tiny_config(tokenizer, num_labels=1))
        torch.nn.init.normal_(model.score.weight, std=0.5)
    folder = tmp_path_factory.mktemp("reward-model")
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def reward_run(tmp_path_factory, tiny_model_dir):
    """A run directory as `martlet rlhf --method rm` leaves it: a LoRA seq_cls adapter (with
    its score head) and config.yaml naming the base model, tuner and task type. Returns the
    run and the adapter model it saved."""
    from martlet_peft.options import TunerOptions
    from martlet_peft.peft_methods import LoraTuner
    from transformers import AutoModelForSequenceClassification

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        base = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1)
        base.config.pad_token_id = 0
        tuner = LoraTuner()
        model = tuner.prepare(
            base, TunerOptions(task_type="seq_cls", lora_rank=4, init_weights="gaussian")
        )
        with torch.no_grad():  # "trained": B is no longer zero, the head is its own
            for name, param in model.named_parameters():
                if "lora_B" in name or "modules_to_save" in name:
                    param.normal_(0, 0.3)
    run = tmp_path_factory.mktemp("rm-run")
    tuner.save(model, str(run))
    (run / "config.yaml").write_text(
        yaml.safe_dump(
            {
                "model": str(tiny_model_dir),
                "tuner": "lora",
                "template": None,
                "task_type": "seq_cls",
            }
        )
    )
    return run, model.eval()


def test_a_full_reward_model_scores_a_query_and_response(cli, reward_dir):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(reward_dir)
    tokenizer = AutoTokenizer.from_pretrained(reward_dir)
    good, bad, alone = by_hand(
        model, tokenizer, [conversation(QUERY, GOOD), conversation(QUERY, BAD), conversation(QUERY)]
    )
    args = ["infer", "--task", "reward", "--model", str(reward_dir), "--query", QUERY]
    result = cli(*args, "--response", GOOD)
    assert result.exit_code == 0, result.stderr
    assert len(result.stdout.splitlines()) == 1
    assert float(result.stdout) == pytest.approx(good, abs=1e-5)
    assert "warning" not in result.stderr
    assert float(cli(*args, "--response", BAD).stdout) == pytest.approx(bad, abs=1e-5)
    assert float(cli(*args).stdout) == pytest.approx(alone, abs=1e-5)  # the prompt alone
    assert len({round(good, 4), round(bad, 4), round(alone, 4)}) == 3
    seq_cls = cli(*args[:2], "seq_cls", *args[3:], "--response", GOOD)  # another name
    assert seq_cls.stdout == result.stdout


def test_a_lora_reward_run_scores_like_the_adapter_it_saved(cli, reward_run, tiny_model_dir):
    from transformers import AutoTokenizer

    run, model = reward_run
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    (expected,) = by_hand(model, tokenizer, [conversation(QUERY, GOOD)])
    args = ["infer", "--adapters", str(run), "--query", QUERY, "--response", GOOD]
    result = cli(*args)  # the run says it is a reward model: no --task needed
    assert result.exit_code == 0, result.stderr
    assert float(result.stdout) == pytest.approx(expected, abs=1e-5)
    assert cli(*args, "--task", "reward").stdout == result.stdout


def test_batch_scores_conversation_and_preference_rows(cli, reward_run, tmp_path):
    run, _ = reward_run
    rows = [
        {"messages": conversation(QUERY, GOOD)},
        {"query": "Two plus two?", "response": "Four."},
        {"prompt": QUERY, "chosen": GOOD, "rejected": BAD},
        {"messages": conversation("Hi", "Hello!"), "rejected_response": "Go away."},
        {"query": "Name a colour.", "response": "Blue, the colour of the sea."},
    ]
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "scored.jsonl"
    result = cli(
        "infer", "--task", "reward", "--adapters", str(run), "--input", str(source),
        "--output", str(out), "--max-batch-size", "2",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "wrote 5 scored rows" in result.stderr
    scored = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(scored) == 5
    assert [sorted(k for k in r if k.endswith("reward")) for r in scored] == [
        ["reward"],
        ["reward"],
        ["chosen_reward", "rejected_reward"],
        ["chosen_reward", "rejected_reward"],
        ["reward"],
    ]
    assert scored[3]["messages"][-1]["content"] == "Hello!"  # each row is written back whole

    def one(query, response):
        args = ["infer", "--adapters", str(run), "--query", query, "--response", response]
        return float(cli(*args).stdout)

    # batching and right padding change nothing
    assert scored[0]["reward"] == pytest.approx(one(QUERY, GOOD), abs=1e-5)
    assert scored[2]["chosen_reward"] == pytest.approx(scored[0]["reward"], abs=1e-5)
    assert scored[2]["rejected_reward"] == pytest.approx(one(QUERY, BAD), abs=1e-5)
    assert scored[3]["rejected_reward"] == pytest.approx(one("Hi", "Go away."), abs=1e-5)
    assert scored[4]["reward"] == pytest.approx(
        one("Name a colour.", "Blue, the colour of the sea."), abs=1e-5
    )
    # without --output the rows go to stdout
    printed = cli("infer", "--adapters", str(run), "--input", str(source))
    assert printed.exit_code == 0, printed.stderr
    printed_rows = [json.loads(x) for x in printed.stdout.splitlines()]
    assert len(printed_rows) == 5
    for a, b in zip(printed_rows, scored, strict=True):  # batches of 8 this time
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == (pytest.approx(b[key], abs=1e-5) if "reward" in key else b[key])


def test_a_language_model_scored_as_a_reward_model_warns(cli, tiny_model_dir):
    result = cli("infer", "--task", "reward", "--model", str(tiny_model_dir), "--query", "Hi")
    assert result.exit_code == 0, result.stderr
    float(result.stdout)
    assert "has no trained score head" in result.stderr


@pytest.fixture
def lm_run(tmp_path, tiny_model_dir):
    from martlet_peft.options import TunerOptions
    from martlet_peft.peft_methods import LoraTuner
    from transformers import AutoModelForCausalLM

    tuner = LoraTuner()
    model = tuner.prepare(AutoModelForCausalLM.from_pretrained(tiny_model_dir), TunerOptions())
    tuner.save(model, str(tmp_path / "lm"))
    (tmp_path / "lm" / "config.yaml").write_text(
        yaml.safe_dump({"model": str(tiny_model_dir), "tuner": "lora"})
    )
    return tmp_path / "lm"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--task", "reward", "--model", "RM"], "--task reward needs conversations to score"),
        (["--model", "RM", "--task-type", "seq_cls"], "needs conversations to score"),
        (["--adapters", "RUN"], "needs conversations to score"),
        (["--task", "reward", "--adapters", "LM", "--query", "q"], "trained a language model"),
        (["--task", "reward", "--model", "RM", "--response", "r"], "--response needs --query"),
        (["--model", "RM", "--query", "q", "--response", "r"], "--response is for scoring"),
        (["--task", "rate", "--model", "RM", "--query", "q"], "must be one of generate, reward"),
        (["--task", "reward", "--query", "q"], "no model to run"),
    ],
)
def test_bad_reward_requests_are_clear_errors(cli, reward_dir, reward_run, lm_run, args, message):
    swap = {"RM": str(reward_dir), "RUN": str(reward_run[0]), "LM": str(lm_run)}
    result = cli("infer", *[swap.get(a, a) for a in args])
    assert result.exit_code != 0
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_text_rows_cannot_be_scored(cli, reward_dir, tmp_path):
    source = tmp_path / "text.jsonl"
    source.write_text(json.dumps({"text": "Just some text."}) + "\n")
    result = cli("infer", "--task", "reward", "--model", str(reward_dir), "--input", str(source))
    assert result.exit_code != 0
    assert "row 1 of" in result.stderr and "no conversation to score" in result.stderr
