"""The rewards kind end to end, in fresh interpreters: a third party's reward, installed as a
package (a fake distribution) or given as a local plugin file, is listed, found by name and
combined with martlet-rewards' built-ins through `martlet.rewards` — its options composed
from flags like theirs, its columns checked — and every mistake is a clear error.

A small script stands in for the training command (`martlet rlhf --method grpo`, whose
training is martlet-train's to test) so that nothing here loads a model: its config class is
`martlet.rewards.RewardOptions` plus --max-completion-length, parsed from the script's
arguments as a command parses its own. A reward that raises or returns NaN fails the batch
with an error naming it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ACME = '''
from dataclasses import dataclass

from martlet import hookimpl
from martlet.config import option
from martlet.records import RewardRecord
from martlet.rewards import text_of

MARTLET_API = 1


@dataclass(kw_only=True)
class KeywordOptions:
    """The keyword reward."""

    keyword_word: str = option("please", help="The word a completion should say.")


class Keyword:
    """1 when the completion says the word and its row's topic, else 0; None without a topic."""

    def __init__(self, *, keyword_word="please", **_):
        self.word = keyword_word

    def __call__(self, prompts, completions, **kwargs):
        out = []
        for completion, topic in zip(completions, kwargs["topic"]):
            text = text_of(completion).lower()
            out.append(None if topic is None else float(self.word in text and topic in text))
        return out


class NanScore:
    """A bug: NaN where it means "does not apply"."""

    def __init__(self, **_):
        pass

    def __call__(self, prompts, completions, **kwargs):
        return [float("nan") for _ in completions]


class Raises:
    """A bug: reads every completion as a number."""

    def __init__(self, **_):
        pass

    def __call__(self, prompts, completions, **kwargs):
        return [float(text_of(c)) for c in completions]


@hookimpl
def martlet_rewards():
    yield RewardRecord(
        name="keyword", impl="acme_rewards:Keyword", options="acme_rewards:KeywordOptions",
        columns=("topic",), summary="1 when the completion says a word and its topic",
    )
    yield RewardRecord(name="nan-score", impl="acme_rewards:NanScore", summary="NaN")
    yield RewardRecord(name="raises", impl="acme_rewards:Raises", summary="a number or else")
'''

SCRIPT = """
import dataclasses, json, os, sys
from martlet.config import build, option, parse_flags
from martlet.errors import MartletError
from martlet import rewards


@dataclasses.dataclass(kw_only=True)
class Grpo(rewards.RewardOptions):
    max_completion_length: int = option(16, help="Most tokens per completion.")


batch = json.loads(os.environ["BATCH"])
try:
    config = build(Grpo, flags=parse_flags(Grpo, sys.argv[1:]).values)
    built = rewards.build(config, device="cpu")
    built.check_columns(batch["columns"], dataset="rows.jsonl")
    scores = built(
        prompts=batch["prompts"], completions=batch["completions"],
        completion_ids=batch["completion_ids"], **batch["columns"],
    )
except MartletError as exc:
    print(exc.message(), file=sys.stderr)
    sys.exit(exc.exit_code)
print(json.dumps({"names": built.names, "weights": built.weights,
                  "per_func": scores.per_func, "total": scores.total,
                  "metrics": scores.metrics()}))
"""

BATCH = {
    "prompts": [[{"role": "user", "content": "Ask nicely for 12 cats."}]] * 3,
    "completions": [
        "<think>ok</think><answer>please, 12 cats</answer>",
        "11 dogs",
        [{"role": "assistant", "content": "<answer>Please send 13 cats</answer>"}],
    ],
    "completion_ids": [[1] * 4, [1] * 14, [1] * 16],
    "columns": {"solution": ["12", "12", "12"], "topic": ["cats", "cats", None]},
}


@pytest.fixture(scope="module")
def acme(fake_site_factory, tmp_path_factory):
    site = fake_site_factory(tmp_path_factory.mktemp("acme-rewards"))
    site.dist("acme-rewards", "0.3.0", entry_points={"acme": "acme_rewards"},
              modules={"acme_rewards": ACME})  # fmt: skip
    return site


def combine(site, *args, batch=BATCH, env=None):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MARTLET_")}
    environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(site.root), environ.get("PYTHONPATH")])
    )
    environ["BATCH"] = json.dumps(batch)
    environ.update(env or {})
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, *args], capture_output=True, text=True, env=environ,
        timeout=120,
    )  # fmt: skip
    return proc


def test_a_third_party_reward_is_listed_with_the_builtins(martlet, acme):
    listed = martlet("plugins", "--kind", "rewards", "--json", site=acme)
    rows = {row["name"]: row["records"]["rewards"] for row in listed.json}
    assert rows["acme"] == ["keyword", "nan-score", "raises"]
    assert {"accuracy", "format", "soft_overlong", "reward_model", "http"} <= set(rows["rewards"])
    text = martlet("plugins", "--kind", "reward", site=acme)
    assert text.rc == 0 and "rewards: keyword" in text.out


def test_a_local_plugin_file_registers_a_reward(martlet, tmp_path):
    path = tmp_path / "my_reward.py"
    path.write_text(ACME.replace("acme_rewards:", "my_reward:"))
    listed = martlet("--plugin", str(path), "plugins", "--kind", "rewards")
    assert listed.rc == 0, listed
    assert "rewards: keyword" in listed.out


def test_third_party_and_builtin_rewards_combine_with_their_options(acme):
    proc = combine(
        acme, "--reward-funcs", "accuracy", "keyword", "format", "soft_overlong",
        "--reward-weights", "1", "2", "0.5", "1", "--keyword-word", "please",
        "--format-pattern", "^<think>", "--soft-cache-length", "4",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["names"] == ["accuracy", "keyword", "format", "soft_overlong"]
    assert got["per_func"] == {
        "accuracy": [1.0, 0.0, 0.0],
        "keyword": [1.0, 0.0, None],  # no topic: it does not apply
        "format": [1.0, 0.0, 0.0],
        # L_max = --max-completion-length (16), L_cache 4: 12 tokens free, -1 at 16
        "soft_overlong": [0.0, -0.5, -1.0],
    }
    assert got["total"] == [3.5, -0.5, -1.0]
    assert got["metrics"]["rewards/keyword/mean"] == 0.5
    assert set(got["metrics"]) >= {"reward", "reward_std", "rewards/accuracy/std"}


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (
            ["--reward-funcs", "accuracy", "keyword", "--reward-weights", "1"],
            {},
            ["--reward-weights has 1 weight for 2 reward functions (accuracy keyword)",
             "--reward-weights 1 1"],
        ),
        (
            ["--reward-funcs", "acuracy"],
            {},
            ["unknown reward 'acuracy'", "did you mean 'accuracy'?",
             "choose one of: accuracy, cosine, format, http, keyword"],
        ),
        (
            ["--reward-funcs", "accuracy", "--keyword-word", "yes"],
            {},
            ["--keyword-word is an option of reward keyword (acme-rewards), which "
             "--reward-funcs does not name", "pass --reward-funcs keyword"],
        ),
        (
            ["--reward-funcs", "accuracy"],
            {"MARTLET_DISABLE_PLUGINS": "rewards"},
            ["reward 'accuracy' is provided by plugin 'rewards' (martlet-rewards",
             "MARTLET_DISABLE_PLUGINS"],
        ),
        (
            ["--reward-funcs", "soft_overlong", "--soft-max-length", "8",
             "--soft-cache-length", "8"],
            {},
            ["--soft-cache-length (8) must be less than --soft-max-length (8)"],
        ),
        (
            ["--reward-funcs", "reward_model"],
            {},
            ["the reward_model reward needs --reward-model RUN_DIR"],
        ),
        (
            ["--reward-funcs", "accuracy", "nan-score"],
            {},
            ["the reward 'nan-score' returned NaN for completion 0",
             "return None where the reward does not apply"],
        ),
        (
            ["--reward-funcs", "format", "raises"],
            {},
            ["the reward 'raises' failed on a batch of 3 completions",
             "why: ValueError: could not convert string to float",
             "report it to the plugin acme"],
        ),
    ],
)  # fmt: skip
def test_mistakes_are_clear_errors(acme, args, env, expected):
    proc = combine(acme, *args, env=env)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    for text in expected:
        assert text in proc.stderr, proc.stderr


def test_a_dataset_without_a_column_a_reward_reads_is_refused_before_scoring(acme):
    batch = {**BATCH, "columns": {"answer": ["12", "12", "12"]}}
    ok = combine(acme, "--reward-funcs", "accuracy", batch=batch)
    assert ok.returncode == 0, ok.stderr  # accuracy reads `answer` when there is no `solution`
    proc = combine(acme, "--reward-funcs", "accuracy", "keyword", batch=batch)
    assert proc.returncode == 2
    assert "the reward 'keyword' reads the column 'topic', which rows.jsonl does not have" in (
        proc.stderr
    )
    assert "its rows have answer" in proc.stderr
    bad = combine(acme, "--reward-funcs", "accuracy", "--accuracy-column", "gold", batch=batch)
    assert "reads the column 'gold'" in bad.stderr and "--accuracy-column" in bad.stderr
