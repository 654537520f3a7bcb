"""The embedded datasets: they load offline, their answers are right, the generator is
deterministic, and the files ship in the package."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import martlet
import pytest
from martlet.errors import ConfigError
from martlet_data.catalog import EMBEDDED_DATASETS

PACKAGE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PACKAGE / "scripts"))
import facts  # noqa: E402

SIZES = {
    "sample-sft": 300,
    "sample-dpo": 300,
    "sample-kto": 300,
    "sample-mcq": 300,
    "sample-pt": 300,
}
# a whole chain "a op b op c = r" (not a tail of a longer one); a/b fractions allowed
NUMBER = r"-?\d+(?:/\d+)?"
EQUATION = re.compile(
    rf"(?<![\d/])(?<![×+\-÷] )((?:{NUMBER} [+\-×÷] )+{NUMBER}) = (-?\d+(?:\.\d+)?)"
)
CAPITAL = re.compile(r"^The capital of (.+) is (.+)\.$")
CAPITALS = {country: city for country, city, _ in facts.COUNTRIES}


def _equations_hold(text: str) -> list[bool]:
    out = []
    for chain, result in EQUATION.findall(text):
        value = eval(chain.replace("×", "*").replace("÷", "/"), {})  # noqa: S307 - digits only
        out.append(abs(value - float(result)) < 1e-9)
    return out


def _answer_is_right(text: str) -> bool | None:
    """True/False when the text states something we can check, else None."""
    checks = _equations_hold(text)
    match = CAPITAL.match(text)
    if match and match.group(1) in CAPITALS:
        checks.append(CAPITALS[match.group(1)] == match.group(2))
    return all(checks) if checks else None


@pytest.mark.parametrize("name,size", SIZES.items())
def test_embedded_samples_load_offline_without_a_bad_row(name, size):
    rows = martlet.load_dataset(name)
    assert len(rows) >= size and rows.report.skipped == 0


def test_every_embedded_dataset_is_listed_with_its_file():
    from importlib import resources

    for record in EMBEDDED_DATASETS:
        package, _, relative = record.path.partition(":")
        assert resources.files(package).joinpath(relative).is_file(), record.path
        assert "embedded" in record.tags


def test_sft_answers_are_right_and_varied():
    rows = martlet.load_dataset("sample-sft")
    checked = 0
    for row in rows:
        for message in row["messages"]:
            if message["role"] == "assistant":
                verdict = _answer_is_right(message["content"])
                assert verdict in (True, None), row
                checked += verdict is True
    assert checked >= 100
    prompts = [r["messages"][-2]["content"] for r in rows if len(r["messages"]) == 2]
    assert len(set(prompts)) == len(prompts)
    assert any(len(r["messages"]) == 4 for r in rows)  # multi-turn
    assert any(r["messages"][0]["role"] == "system" for r in rows)
    assert any(re.search(r"[\u4e00-\u9fff]", r["messages"][-1]["content"]) for r in rows)
    assert any("```python" in r["messages"][-1]["content"] for r in rows)


def test_dpo_chosen_is_right_and_rejected_is_wrong_or_unhelpful():
    rows = martlet.load_dataset("sample-dpo")
    wrong = 0
    for row in rows:
        chosen, rejected = row["messages"][-1]["content"], row["rejected_response"]
        assert chosen != rejected
        assert _answer_is_right(chosen) in (True, None)
        verdict = _answer_is_right(rejected)
        assert verdict in (False, None), row
        wrong += verdict is False
    assert wrong >= 50


def test_kto_labels_match_the_answers():
    rows = martlet.load_dataset("sample-kto")
    labels = [r["label"] for r in rows]
    assert 0.3 < sum(labels) / len(labels) < 0.7
    for row in rows:
        verdict = _answer_is_right(row["messages"][-1]["content"])
        if verdict is not None:
            assert verdict == row["label"], row


def test_mcq_rows_are_well_formed_and_right():
    rows = martlet.load_dataset("sample-mcq")
    subjects = set()
    for row in rows:
        choices, letter = row["choices"], row["answer"]
        assert len(choices) == 4 and len(set(choices)) == 4
        assert letter in "ABCD"
        correct = choices["ABCD".index(letter)]
        assert row["messages"][-1]["content"] == letter
        assert f"{letter}. {correct}" in row["messages"][0]["content"]
        subjects.add(row["subject"])
        question = row["question"]
        if m := re.fullmatch(r"What is (\d+) ([+\-×]) (\d+)\?", question):
            a, op, b = int(m.group(1)), m.group(2), int(m.group(3))
            assert int(correct) == {"+": a + b, "-": a - b, "×": a * b}[op]
        if m := re.fullmatch(r"What is the capital of (.+)\?", question):
            assert CAPITALS[m.group(1)] == correct
    assert {"geography", "chemistry", "arithmetic", "vocabulary", "languages"} <= subjects
    answers = [r["answer"] for r in rows]
    assert all(answers.count(x) > len(rows) / 8 for x in "ABCD")  # letters are balanced


def test_pretraining_text_is_varied_prose():
    rows = martlet.load_dataset("sample-pt")
    texts = [r["text"] for r in rows]
    assert len(set(texts)) == len(texts)
    assert all(t.endswith(".") and len(t.split()) >= 8 for t in texts)


# ------------------------------------------------------------------------ self-cognition


def test_self_cognition_fills_both_languages():
    rows = martlet.load_dataset(
        "self-cognition", model_name=("Aria", "阿莉亚"), model_author=("Acme Labs", "艾克米实验室")
    )
    assert len(rows) >= 100
    en = [r for r in rows if r["tag"] == "en"]
    zh = [r for r in rows if r["tag"] == "zh"]
    assert len(en) >= 50 and len(zh) >= 50
    assert len({r["messages"][0]["content"] for r in rows}) == len(rows)
    text = " ".join(m["content"] for r in rows for m in r["messages"])
    assert "{{" not in text
    assert any("Aria" in r["messages"][1]["content"] for r in en)
    assert all("阿莉亚" not in r["messages"][1]["content"] for r in en)
    assert any("阿莉亚" in r["messages"][1]["content"] for r in zh)
    assert any("艾克米实验室" in r["messages"][1]["content"] for r in zh)


def test_self_cognition_one_name_serves_both_languages():
    rows = martlet.load_dataset("self-cognition", model_name="Aria", model_author="Acme")
    zh = [r["messages"][1]["content"] for r in rows if r["tag"] == "zh"]
    assert any("Aria" in t for t in zh) and any("Acme" in t for t in zh)


@pytest.mark.parametrize(
    "options,missing",
    [
        ({}, "--model-name and --model-author"),
        ({"model_name": "Aria"}, "--model-author"),
        ({"model_author": "Acme"}, "--model-name"),
    ],
)
def test_self_cognition_needs_both_names(options, missing):
    with pytest.raises(ConfigError) as info:
        martlet.load_dataset("self-cognition", **options)
    assert info.value.what == f"the self-cognition dataset needs {missing}"
    assert "--model-name Aria" in info.value.fix


def test_self_cognition_checks_names_before_streaming():
    with pytest.raises(ConfigError):
        martlet.load_dataset("self-cognition", streaming=True)


# ------------------------------------------------------------------------ generator, packaging


def test_the_generator_reproduces_the_shipped_files():
    script = PACKAGE / "scripts" / "make_embedded.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--check"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.slow
def test_a_built_wheel_ships_the_embedded_files(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(PACKAGE)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (wheel,) = tmp_path.glob("martlet_data-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for record in EMBEDDED_DATASETS:
        assert record.path.replace(":", "/") in names, record.path


def test_rl_prompts_have_no_answer_turn_and_a_right_solution():
    rows = martlet.load_dataset("sample-rl", prompts=True, keep_columns=True)
    assert len(rows) == 400 and rows.report.skipped == 0
    questions = set()
    for row in rows:
        system, user = row["messages"]
        assert system["role"] == "system" and "<answer>" in system["content"]
        assert user["role"] == "user"
        numbers = [int(n) for n in re.findall(r"\d+", user["content"])]
        a, b = numbers
        text = user["content"]
        if "+" in text or "Add" in text or "more" in text:
            want = a + b
        elif "-" in text or "Subtract" in text or "away" in text:
            want = b - a if "Subtract" in text else a - b
        else:
            want = a * b
        assert row["solution"] == str(want), row
        questions.add(text)
    assert len(questions) > 350


def test_prompt_rows_keep_their_other_columns_where_asked(tmp_path):
    path = tmp_path / "rows.jsonl"
    rows = [
        {"messages": [{"role": "user", "content": "2+2?"}], "solution": "4", "level": 1},
        {"question": "3+3?", "answer": "6", "topic": "sums"},
        {"prompt": "Name a colour.", "system": "Be brief."},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    kept = martlet.load_dataset(str(path), prompts=True, keep_columns=True)
    assert [r["messages"][-1]["content"] for r in kept] == ["2+2?", "3+3?", "Name a colour."]
    assert kept[0]["solution"] == "4" and kept[0]["level"] == 1
    assert kept[1]["answer"] == "6" and kept[1]["topic"] == "sums"
    assert kept[1]["reference"] == "6"
    assert "system" not in kept[2] and kept[2]["messages"][0]["role"] == "system"
    plain = martlet.load_dataset(str(path), prompts=True)
    assert "solution" not in plain[0] and "topic" not in plain[1]
