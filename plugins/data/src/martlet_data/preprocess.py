"""Preprocessors of registered datasets: ``fn(row, **options) -> row`` (or a list of rows).

A dataset record's ``impl`` names one when the dataset's raw columns need more than the
automatic format detection: multiple-choice benchmarks (into a chat row plus the structured
``question``/``choices``/``answer`` fields), GSM8K, Dolly, LIMA, OpenOrca, and the
``self-cognition`` templates. Each is a small pure function; a row it cannot use raises
:class:`~martlet_data.errors.RowProblem` like the converters do. A ``keep`` attribute lists
the extra columns the canonical row keeps.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from typing import Any

from martlet.errors import ConfigError

from martlet_data.errors import RowProblem

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
MCQ_FIELDS = ("question", "choices", "answer", "subject")
_CJK = re.compile(r"[\u4e00-\u9fff]")


def _need(row: Mapping[str, Any], *keys: str) -> list[Any]:
    values = []
    for key in keys:
        value = row.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            raise RowProblem("missing field", f"{key!r} is missing or empty")
        values.append(value)
    return values


def mcq_prompt(question: str, choices: Sequence[str]) -> str:
    """The user turn of a multiple-choice row: the question, lettered choices, an instruction
    (in Chinese when the question is)."""
    lines = [question.strip()]
    lines += [f"{LETTERS[i]}. {str(c).strip()}" for i, c in enumerate(choices)]
    if _CJK.search(question):
        lines.append("请直接回答正确选项的字母。")
    else:
        lines.append("Answer with the letter of the correct choice.")
    return "\n".join(lines)


def mcq_row(
    question: str, choices: Sequence[str], answer: int, subject: str | None = None
) -> dict[str, Any]:
    """A canonical multiple-choice row: ``messages`` (the prompt, then the answer letter) and
    the structured ``question``, ``choices``, ``answer`` (a letter) and ``subject``."""
    if not isinstance(question, str) or not question.strip():
        raise RowProblem("empty prompt", "the question is empty")
    if len(choices) < 2 or len(choices) > len(LETTERS):
        raise RowProblem("wrong type", f"a question needs 2 to 26 choices, got {len(choices)}")
    if not isinstance(answer, int) or not 0 <= answer < len(choices):
        raise RowProblem("wrong type", f"answer index {answer!r} is not one of the choices")
    letter = LETTERS[answer]
    row: dict[str, Any] = {
        "messages": [
            {"role": "user", "content": mcq_prompt(question, choices)},
            {"role": "assistant", "content": letter},
        ],
        "question": question.strip(),
        "choices": [str(c).strip() for c in choices],
        "answer": letter,
    }
    if subject:
        row["subject"] = subject
    return row


def _letter_index(value: Any, n: int) -> int:
    text = str(value).strip().upper()
    if len(text) == 1 and text in LETTERS[:n]:
        return LETTERS.index(text)
    raise RowProblem("wrong type", f"answer {value!r} is not a letter A-{LETTERS[n - 1]}")


def _keep(fn):
    fn.keep = MCQ_FIELDS
    return fn


@_keep
def mcq(row: Mapping[str, Any], **options: Any) -> dict[str, Any]:
    """Rows already in the multiple-choice shape (the embedded ``sample-mcq``): ``question``,
    ``choices``, ``answer`` (a letter), optional ``subject``; the chat turns are rendered."""
    question, choices, answer = _need(row, "question", "choices", "answer")
    if not isinstance(choices, list):
        raise RowProblem("wrong type", "'choices' must be a list")
    index = _letter_index(answer, len(choices))
    return mcq_row(question, choices, index, row.get("subject"))


@_keep
def lettered(row: Mapping[str, Any], **options: Any) -> dict[str, Any]:
    """C-Eval and CMMLU: ``question``/``Question``, columns ``A``-``D``, ``answer``/``Answer``."""
    question = row.get("question", row.get("Question"))
    answer = row.get("answer", row.get("Answer"))
    choices = [row.get(letter) for letter in "ABCD"]
    if question is None or answer is None or any(c is None for c in choices):
        raise RowProblem("missing field", "needs question, A, B, C, D and answer")
    if isinstance(answer, str) and not answer.strip():
        raise RowProblem("missing field", "the answer is empty (a test split without answers?)")
    return mcq_row(question, choices, _letter_index(answer, 4), row.get("subject"))


@_keep
def mmlu(row: Mapping[str, Any], **options: Any) -> dict[str, Any]:
    """MMLU: ``question``, ``choices`` (list), ``answer`` (index), ``subject``."""
    question, choices = _need(row, "question", "choices")
    answer = row.get("answer")
    if isinstance(answer, str) and answer.strip().isdigit():
        answer = int(answer)
    return mcq_row(question, list(choices), answer, row.get("subject"))


@_keep
def arc(row: Mapping[str, Any], **options: Any) -> dict[str, Any]:
    """ARC: ``question``, ``choices: {text: [...], label: [...]}``, ``answerKey``."""
    question, choices, key = _need(row, "question", "choices", "answerKey")
    texts, labels = list(choices.get("text", [])), [str(x) for x in choices.get("label", [])]
    if str(key) not in labels:
        raise RowProblem("wrong type", f"answerKey {key!r} is not one of the labels {labels}")
    return mcq_row(question, texts, labels.index(str(key)))


@_keep
def hellaswag(row: Mapping[str, Any], **options: Any) -> dict[str, Any]:
    """HellaSwag: context ``ctx``, four ``endings``, ``label`` (index as text)."""
    ctx, endings = _need(row, "ctx", "endings")
    label = row.get("label")
    if label is None or str(label).strip() == "":
        raise RowProblem("missing field", "the label is empty (the test split has none)")
    question = f"Which ending continues the text best?\n{ctx.strip()} ..."
    return mcq_row(question, list(endings), int(label), row.get("activity_label"))


@_keep
def truthfulqa_mc1(row: Mapping[str, Any], **options: Any) -> dict[str, Any]:
    """TruthfulQA (multiple_choice): ``question``, ``mc1_targets: {choices, labels}``.
    The source lists the true answer first; the choices are shuffled with a seed taken from
    the question, so the letter is not always A (and the same every run)."""
    question, targets = _need(row, "question", "mc1_targets")
    choices, labels = list(targets["choices"]), list(targets["labels"])
    if labels.count(1) != 1:
        raise RowProblem("wrong type", "mc1_targets must mark exactly one true choice")
    order = list(range(len(choices)))
    random.Random(question).shuffle(order)
    shuffled = [choices[i] for i in order]
    return mcq_row(question, shuffled, order.index(labels.index(1)))


@_keep
def boolq(row: Mapping[str, Any], **options: Any) -> dict[str, Any]:
    """BoolQ: ``passage``, ``question``, boolean ``answer`` -> a yes/no choice."""
    passage, question = _need(row, "passage", "question")
    answer = row.get("answer")
    if not isinstance(answer, bool):
        raise RowProblem("wrong type", f"'answer' must be true or false, got {answer!r}")
    text = f"{passage.strip()}\nQuestion: {question.strip().rstrip('?')}?"
    return mcq_row(text, ["yes", "no"], 0 if answer else 1)


@_keep
def winogrande(row: Mapping[str, Any], **options: Any) -> dict[str, Any]:
    """WinoGrande: ``sentence`` with a blank ``_``, ``option1``, ``option2``, ``answer`` 1|2."""
    sentence, one, two, answer = _need(row, "sentence", "option1", "option2", "answer")
    if str(answer) not in ("1", "2"):
        raise RowProblem("wrong type", f"answer must be 1 or 2, got {answer!r}")
    question = f"Which option fills the blank (_) correctly?\n{sentence.strip()}"
    return mcq_row(question, [one, two], int(answer) - 1)


@_keep
def piqa(row: Mapping[str, Any], **options: Any) -> dict[str, Any]:
    """PIQA: ``goal``, ``sol1``, ``sol2``, ``label`` 0|1."""
    goal, one, two = _need(row, "goal", "sol1", "sol2")
    label = row.get("label")
    if label not in (0, 1, "0", "1"):
        raise RowProblem("wrong type", f"label must be 0 or 1, got {label!r}")
    question = f"Which solution achieves the goal?\nGoal: {goal.strip()}"
    return mcq_row(question, [one, two], int(label))


def gsm8k(row: Mapping[str, Any], **options: Any) -> dict[str, Any]:
    """GSM8K: ``question``, ``answer`` (reasoning, then ``#### N``) -> the worked answer as the
    assistant turn and the final number as ``answer``."""
    question, answer = _need(row, "question", "answer")
    reasoning, sep, final = answer.rpartition("####")
    if not sep or not final.strip():
        raise RowProblem("missing field", "the answer has no final '#### N' line")
    final = final.strip().replace(",", "")
    content = f"{reasoning.strip()}\nThe answer is {final}."
    return {
        "messages": [
            {"role": "user", "content": question.strip()},
            {"role": "assistant", "content": content},
        ],
        "answer": final,
    }


gsm8k.keep = ("answer",)


def dolly(row: Mapping[str, Any], **options: Any) -> dict[str, Any]:
    """Dolly: ``instruction``, optional ``context``, ``response``, ``category``."""
    instruction, response = _need(row, "instruction", "response")
    context = (row.get("context") or "").strip()
    query = f"{instruction.strip()}\n\n{context}" if context else instruction.strip()
    return {"query": query, "response": response, "category": row.get("category")}


dolly.keep = ("category",)


def lima(row: Mapping[str, Any], **options: Any) -> dict[str, Any]:
    """LIMA: ``conversations`` as a list of strings, user and assistant in turn."""
    (turns,) = _need(row, "conversations")
    if not isinstance(turns, list) or not all(isinstance(t, str) for t in turns):
        raise RowProblem("wrong type", "'conversations' must be a list of strings")
    roles = ("user", "assistant")
    return {"messages": [{"role": roles[i % 2], "content": t} for i, t in enumerate(turns)]}


def openorca(row: Mapping[str, Any], **options: Any) -> dict[str, Any]:
    """OpenOrca: ``system_prompt``, ``question``, ``response``."""
    return {
        "system": row.get("system_prompt"),
        "query": row.get("question"),
        "response": row.get("response"),
    }


def drop_blank_text(row: Mapping[str, Any], **options: Any) -> list[dict[str, Any]]:
    """Wikitext: whitespace-only lines separate articles there; they are no rows."""
    text = row.get("text")
    if isinstance(text, str) and not text.strip():
        return []
    return [dict(row)]


# ------------------------------------------------------------------------- self-cognition


def _pick(names: Sequence[str], lang: str) -> str:
    return names[1] if lang == "zh" and len(names) > 1 else names[0]


def _validate_self_cognition(model_name=(), model_author=(), **options: Any) -> None:
    missing = [
        flag
        for flag, value in (("--model-name", model_name), ("--model-author", model_author))
        if not value
    ]
    if missing:
        raise ConfigError(
            f"the self-cognition dataset needs {' and '.join(missing)}",
            why="its answers say who the assistant is and who made it",
            fix="e.g. --model-name Aria 阿莉亚 --model-author 'Acme Labs' 艾克米实验室 "
            "(English, then optionally Chinese); in Python: model_name=..., model_author=...",
        )


def self_cognition(
    row: Mapping[str, Any],
    model_name: Sequence[str] = (),
    model_author: Sequence[str] = (),
    **options: Any,
) -> dict[str, Any]:
    """Fill ``{{NAME}}`` and ``{{AUTHOR}}`` in a self-cognition row with the English or the
    Chinese name (``tag`` says which; one name serves both languages)."""
    _validate_self_cognition(model_name, model_author)
    lang = row.get("tag", "en")
    name, author = _pick(model_name, lang), _pick(model_author, lang)
    query, response = _need(row, "query", "response")

    def fill(text: str) -> str:
        return text.replace("{{NAME}}", name).replace("{{AUTHOR}}", author)

    return {
        "messages": [
            {"role": "user", "content": fill(query)},
            {"role": "assistant", "content": fill(response)},
        ],
        "tag": lang,
    }


self_cognition.validate = _validate_self_cognition
self_cognition.keep = ("tag",)


def stack_exchange_paired(row: Mapping[str, Any], **options: Any) -> dict[str, Any]:
    """Stack Exchange pairs: ``question``, the better ``response_j``, the worse ``response_k``."""
    return {
        "prompt": row.get("question"),
        "chosen": row.get("response_j"),
        "rejected": row.get("response_k"),
    }
