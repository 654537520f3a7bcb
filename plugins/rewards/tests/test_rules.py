"""The text rewards on hand-written cases: accuracy (answers read and compared), format,
repetition, soft_overlong and cosine (checked against the formulas of DAPO and of
"Demystifying Long Chain-of-Thought Reasoning", and against TRL's own functions)."""

from __future__ import annotations

import math
import sys
import types

import pytest
from martlet.errors import ConfigError, MartletError
from martlet_rewards import answers
from martlet_rewards.rules import Accuracy, Cosine, Format, Repetition, SoftOverlong


def score(reward, completions, **kwargs):
    return reward(prompts=["q"] * len(completions), completions=completions, **kwargs)


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("1,000", 1000.0), ("1000.0", 1000.0), ("$1,000.00", 1000.0), ("3/4", 0.75),
        ("\\frac{3}{4}", 0.75), ("\\dfrac{3}{4}", 0.75), ("-\\frac{1}{2}", -0.5),
        ("\\frac34", 0.75),
        ("0.75", 0.75), ("75%", 75.0), ("42.", 42.0), ("-7", -7.0), ("1e3", 1000.0),
        ("\\text{12}", 12.0), (".5", 0.5), ("x", None), ("1,5", None), ("3/0", None), ("", None),
    ],
)  # fmt: skip
def test_numbers_are_read_whatever_their_formatting(text, number):
    assert answers.to_number(text) == number


def test_answers_are_found_where_models_put_them():
    assert answers.boxed("so \\boxed{\\frac{1}{2}} and \\boxed{7}") == "7"
    assert answers.boxed("\\boxed{a{b}c}") == "a{b}c"
    assert answers.boxed("no box") is None
    assert answers.extracted("<think>2</think><answer>The sum is \\boxed{5}</answer>") == "5"
    assert answers.extracted("<answer> 12 </answer>") == "12"
    assert answers.extracted("just 3") is None
    assert answers.last_number("I had 3 apples, then 1,250.5 more, so 7/8.") == "7/8"
    assert answers.last_number("nothing") is None
    assert answers.reference("Natalia sold 48/2 = 24 clips.\n#### 72") == "72"
    assert answers.reference("<answer>\\boxed{9}</answer>") == "9"
    assert answers.reference(3) == "3" and answers.reference("  ") is None
    assert answers.reference(None) is None


def test_accuracy_against_a_numeric_solution():
    completions = [
        "<think>...</think><answer>1000</answer>",  # the tag
        "The answer is \\boxed{1,000}.",  # the box
        "So we get 999 + 1 = 1000.0",  # the last number
        "It is 1000 or maybe 10",  # the last number is wrong
        "I do not know",  # no number at all
        "",  # nothing
        "<answer>\\frac{3}{4}</answer>",
        "#### 0.75",
    ]
    solution = ["1000"] * 6 + ["0.75", "3/4"]
    assert score(Accuracy(), completions, solution=solution) == [1, 1, 1, 0, 0, 0, 1, 1]


def test_accuracy_reads_answer_when_there_is_no_solution_and_skips_missing_references():
    got = score(Accuracy(), ["#### 72", "72", "it is 72"], answer=["A.\n#### 72", None, ""])
    assert got == [1.0, None, None]  # None: no reference, the reward does not apply


def test_accuracy_column_option_and_its_error():
    reward = Accuracy(accuracy_column="gold")
    assert reward.columns == ("gold",)
    assert score(reward, ["\\boxed{5}"], gold=["5"], solution=["6"]) == [1.0]
    with pytest.raises(MartletError, match="got no 'gold' column"):
        score(reward, ["5"], solution=["5"])
    assert Accuracy().columns == ("solution|answer",)


def test_accuracy_on_text_answers(monkeypatch):
    monkeypatch.setattr(answers, "has_math_verify", lambda: False)  # the same on every machine
    reward = Accuracy()
    got = score(
        reward,
        ["<answer>Paris</answer>", "<answer> paris. </answer>", "Paris", "<answer>Rome</answer>"],
        solution=["Paris", "Paris", "Paris", "Paris"],
    )
    assert got == [1.0, 1.0, 1.0, 0.0]
    numeric = Accuracy(accuracy_match="numeric")
    assert score(numeric, ["Paris"], solution=["Paris"]) == [None]  # not a number: n/a
    text = Accuracy(accuracy_match="text")
    assert score(text, ["<answer>1000.0</answer>"], solution=["1000"]) == [0.0]
    loose = Accuracy(accuracy_tolerance=0.01)
    assert score(loose, ["\\boxed{3.14}"], solution=["3.14159"]) == [1.0]
    assert score(Accuracy(), ["\\boxed{3.14}"], solution=["3.14159"]) == [0.0]


def test_accuracy_through_math_verify_needs_the_package(monkeypatch):
    monkeypatch.setattr(answers, "has_math_verify", lambda: False)
    with pytest.raises(MartletError, match="needs the math_verify package") as err:
        Accuracy(accuracy_match="math_verify")
    assert "pip install math-verify" in err.value.fix


def test_format_default_is_think_then_answer_and_nothing_after():
    got = score(
        Format(),
        [
            "<think>a\nb</think>\n<answer>1</answer>",
            "<think>a</think><answer>1</answer> trailing",
            "<answer>1</answer>",
            "",
            "<think>a</think> <answer>x\ny</answer>\n",
        ],
    )
    assert got == [1.0, 0.0, 0.0, 0.0, 0.0]  # (ms-swift's pattern: nothing after </answer>)
    own = Format(format_pattern=r"Answer: \d+$")
    assert score(own, ["Answer: 12", "answer: 12", "Answer: 12 ok"]) == [1.0, 0.0, 0.0]
    messages = [[{"role": "assistant", "content": "Answer: 3"}]]
    assert score(own, messages) == [1.0]  # TRL's chat completions read as their text
    with pytest.raises(ConfigError, match="not a regular expression"):
        Format(format_pattern="(")


def test_repetition_penalises_repeated_word_ngrams():
    reward = Repetition()
    got = score(reward, ["a b c d e", "a b a b a b", "go go", "", "A B C a b c"])
    # "a b a b a b": 4 trigrams, 2 distinct -> (1 - 2/4) * -1; "A B C a b c": lower-cased,
    # 4 trigrams, 3 distinct
    assert got == [0.0, -0.5, 0.0, 0.0, -0.25]
    assert score(Repetition(repetition_n_grams=1, repetition_max_penalty=-2), ["x x x x"]) == [-1.5]


def test_soft_overlong_follows_dapo():
    reward = SoftOverlong(soft_max_length=100, soft_cache_length=20)
    lengths = [0, 80, 90, 100, 130]
    got = score(reward, ["x"] * 5, completion_ids=[[7] * n for n in lengths])
    assert got == [0.0, 0.0, -0.5, -1.0, -1.0]
    # the run's --max-completion-length is L_max by default, L_cache a quarter of it
    default = SoftOverlong(max_completion_length=40)
    assert (default.max_length, default.cache_length) == (40, 10)
    assert score(default, ["x"], completion_ids=[[1] * 35]) == [-0.5]


def test_soft_overlong_matches_trl():
    rewards = pytest.importorskip("trl.rewards")
    trl = rewards.get_soft_overlong_punishment(max_completion_len=100, soft_punish_cache=20)
    ids = [[1] * n for n in (10, 81, 95, 100)]
    ours = score(
        SoftOverlong(soft_max_length=100, soft_cache_length=20), ["x"] * 4, completion_ids=ids
    )
    assert ours == pytest.approx(trl(completion_ids=ids))


def test_length_rewards_refuse_what_they_cannot_use():
    with pytest.raises(ConfigError, match="needs --soft-max-length"):
        SoftOverlong()
    with pytest.raises(ConfigError, match="must be less than"):
        SoftOverlong(soft_max_length=10, soft_cache_length=10)
    with pytest.raises(ConfigError, match="needs --cosine-max-len"):
        Cosine()
    with pytest.raises(MartletError, match="needs completion_ids"):
        score(SoftOverlong(soft_max_length=8), ["x"])
    with pytest.raises(MartletError, match="2 rows for 1 completions"):
        score(SoftOverlong(soft_max_length=8), ["x"], completion_ids=[[1], [2]])


def test_cosine_scales_correctness_by_length():
    reward = Cosine(cosine_max_len=100)
    completions = [
        "\\boxed{4}",
        "\\boxed{4}",
        "\\boxed{4}",
        "\\boxed{5}",
        "\\boxed{5}",
        "\\boxed{4}",
    ]
    lengths = [0, 50, 100, 0, 100, 250]
    got = score(reward, completions, completion_ids=[[1] * n for n in lengths], solution=["4"] * 6)
    # correct: 1.0 at length 0 down to 0.5 at max; wrong: -0.5 at 0 up to 0.0 at max
    assert got == pytest.approx([1.0, 0.75, 0.5, -0.5, 0.0, 0.5])
    none = score(reward, ["\\boxed{4}"], completion_ids=[[1]], solution=[None])
    assert none == [None]


def test_cosine_matches_the_formula():
    reward = Cosine(
        cosine_min_len_value_wrong=-1.0,
        cosine_max_len_value_wrong=-0.5,
        cosine_min_len_value_correct=0.9,
        cosine_max_len_value_correct=0.1,
        cosine_max_len=60,
    )
    for length in (0, 13, 30, 59):
        cos = math.cos(length * math.pi / 60)
        (right,) = score(reward, ["\\boxed{1}"], completion_ids=[[1] * length], solution=["1"])
        (wrong,) = score(reward, ["\\boxed{2}"], completion_ids=[[1] * length], solution=["1"])
        assert right == pytest.approx(0.1 + (0.9 - 0.1) * (1 + cos) / 2)
        assert wrong == pytest.approx(-0.5 + (-1.0 + 0.5) * (1 + cos) / 2)


def test_accuracy_sends_other_answers_to_math_verify_where_it_is_installed(monkeypatch):
    """The plumbing, with a stand-in for the package (the same on every machine): answers that
    are not numbers go to math_verify's parse/verify under auto and math_verify, a bare LaTeX
    answer is read again as inline LaTeX, an unreadable reference does not apply."""
    parsed = []

    def parse(text):
        parsed.append(text)
        if text in ("unreadable", "$unreadable$") or "$" not in text:
            return []  # as math_verify finds nothing outside LaTeX delimiters
        return [text.strip("$").replace(" ", "")]

    fake = types.ModuleType("math_verify")
    fake.parse, fake.verify = parse, lambda gold, answer: bool(answer) and gold == answer
    monkeypatch.setitem(sys.modules, "math_verify", fake)
    monkeypatch.setattr(answers, "has_math_verify", lambda: True)
    got = score(
        Accuracy(),
        ["\\boxed{x^2 + 1}", "<answer>x^2+2</answer>", "\\boxed{1}", "x"],
        solution=["x^2+1", "x^2+1", "1", "unreadable"],
    )
    assert got == [1.0, 0.0, 1.0, None]
    assert "$x^2 + 1$" in parsed  # the extracted answer, read again as inline LaTeX
    assert "1" not in parsed and "$1$" not in parsed  # numbers compare as numbers
    assert score(Accuracy(accuracy_match="math_verify"), ["\\boxed{y}"], solution=["y"]) == [1.0]


def test_accuracy_through_the_real_math_verify():
    pytest.importorskip(
        "math_verify", reason="math-verify is optional: pip install 'martlet-rewards[math]'"
    )
    reward = Accuracy(accuracy_match="math_verify")
    got = score(
        reward,
        ["\\boxed{\\frac{\\sqrt{2}}{2}}", "<answer>$x^2+2x+1$</answer>", "\\boxed{7}", ""],
        solution=["$\\frac{1}{\\sqrt{2}}$", "$(x+1)^2$", "$8$", "$3$"],
    )
    assert got == [1.0, 1.0, 0.0, 0.0]
