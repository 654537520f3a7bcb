"""The built-in eval tasks and tasks declared in a YAML file.

Two shapes cover them (:class:`martlet.interfaces.EvalTask`):

- :class:`ChoiceTask` — a multiple-choice question scored by the log-likelihood of each
  choice after the prompt, the way lm-evaluation-harness scores them. ``letters`` style
  (MMLU, C-Eval, CMMLU): the lettered choices are in the prompt, which ends with
  ``Answer:``, and the continuations are ``" A"`` ... ``" D"``; ``acc``. ``text`` style (ARC,
  HellaSwag, PIQA): the continuations are the choices' texts; ``acc`` and ``acc_norm``
  (log-likelihood per character of the continuation).
- :class:`GenerateTask` — an answer generated greedily (GSM8K), its final number extracted
  and compared with the reference: ``exact_match``.

Documents are canonical rows from :func:`martlet.load_dataset` (``question``, ``choices``,
``answer``, ``subject``; GSM8K's ``messages`` and ``answer``), or a local file's raw rows.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from martlet.errors import ConfigError, MartletError
from martlet.evaluation import Generate, Loglikelihood, turns

from martlet_eval.scoring import LETTERS, argmax, extract_answer, gold_index, normalize

LETTER_PROMPT = "{question}\n{choices_block}\nAnswer:"
TEXT_PROMPT = "Question: {question}\nAnswer:"
GENERATE_PROMPT = "Question: {question}\nAnswer:"
RAW_SUFFIXES = (".jsonl", ".json", ".csv")


class _Fields(dict):
    """``str.format_map`` fields that name the missing one in a clear error."""

    def __missing__(self, key: str) -> Any:
        raise MartletError(
            f"the prompt names the field {{{key}}}, which a document does not have",
            why=f"its fields are {', '.join(sorted(self)) or 'none'}",
            fix="use one of those in the task's prompt",
        )


def read_rows(
    dataset: str, split: str | None = None, *, base: Path | None = None
) -> list[dict[str, Any]]:
    """The rows of ``dataset``: a local ``.jsonl``/``.json``/``.csv`` file read as it is
    (relative to ``base``), else any dataset spec through :func:`martlet.load_dataset`."""
    path = Path(dataset).expanduser()
    if base is not None and not path.is_absolute() and (base / path).exists():
        path = base / path
    if path.suffix.lower() in RAW_SUFFIXES and path.is_file():
        return _read_file(path)
    import martlet

    options = {"split": split} if split else {}
    return list(martlet.load_dataset(dataset, **options))


def _read_file(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".csv":
        return [dict(row) for row in csv.DictReader(text.splitlines())]
    if path.suffix.lower() == ".json":
        data = json.loads(text)
        if not isinstance(data, list):
            raise MartletError(
                f"{path} holds no list of rows", fix="write a JSON list or JSON lines"
            )
        return data
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise MartletError(f"{path}:{number} is not JSON", why=str(exc)) from None
    return rows


def _fields(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A document's fields for a prompt: its own, and for a chat row without ``question``
    the first user turn as ``question`` and the first answer as ``worked``."""
    out = dict(doc)
    messages = doc.get("messages") or []
    if "question" not in out:
        for m in messages:
            if m.get("role") == "user":
                out["question"] = m.get("content")
                break
    for m in messages:
        if m.get("role") == "assistant":
            out.setdefault("worked", m.get("content"))
            break
    return out


def _fill(prompt: str, fields: Mapping[str, Any]) -> str:
    return prompt.format_map(_Fields(fields))


class _Task:
    """What both shapes share: the documents, the few-shot pool, the subject."""

    #: the split scored and the split few-shot examples come from (None: the dataset's own)
    split: str | None = None
    fewshot_split: str | None = None

    def __init__(
        self,
        *,
        dataset: str,
        split: str | None = None,
        fewshot_split: str | None = None,
        prompt: str | None = None,
        base: str | None = None,
        **options: Any,
    ) -> None:
        self.dataset = dataset
        if split is not None:
            self.split = split
        if fewshot_split is not None:
            self.fewshot_split = fewshot_split
        if prompt is not None:
            self.prompt = prompt
        self.base = Path(base) if base else None
        self.options = options

    def _rows(self, split: str | None) -> list[dict[str, Any]]:
        return read_rows(self.dataset, split, base=self.base)

    def docs(self, limit: int | None = None) -> list[dict]:
        rows = [_fields(r) for r in self._rows(self.split)]
        rows = [r for r in rows if self.keep(r)]
        return rows if limit is None else rows[:limit]

    def fewshot_docs(self) -> list[dict]:
        if not self.fewshot_split:
            return []
        return [_fields(r) for r in self._rows(self.fewshot_split)]

    def keep(self, doc: Mapping[str, Any]) -> bool:
        return True

    def subject(self, doc: Mapping[str, Any]) -> str | None:
        value = doc.get("subject")
        return str(value) if value else None


class ChoiceTask(_Task):
    """A multiple-choice task (see the module's documentation)."""

    style: str = "letters"
    prompt: str = ""
    choices_field: str | list[str] = "choices"
    answer_field: str = "answer"

    def __init__(
        self,
        *,
        style: str | None = None,
        choices: str | list[str] | None = None,
        answer: str | None = None,
        subjects: Sequence[str] = (),
        **options: Any,
    ) -> None:
        super().__init__(**options)
        if style is not None:
            self.style = style
        if self.style not in ("letters", "text"):
            raise ConfigError(f"choice style {self.style!r} is unknown", fix="use letters or text")
        if not self.prompt:
            self.prompt = LETTER_PROMPT if self.style == "letters" else TEXT_PROMPT
        if choices is not None:
            self.choices_field = choices
        if answer is not None:
            self.answer_field = answer
        self.subjects = set(subjects)

    def keep(self, doc: Mapping[str, Any]) -> bool:
        return not self.subjects or doc.get("subject") in self.subjects

    def choices(self, doc: Mapping[str, Any]) -> list[str]:
        if isinstance(self.choices_field, list):
            return [str(c) for c in self.choices_field]
        value = doc.get(self.choices_field)
        if not isinstance(value, list) or len(value) < 2:
            raise MartletError(
                f"a document's {self.choices_field!r} is not a list of choices: {value!r}",
                fix="give each row a list of at least two choices",
            )
        return [str(c).strip() for c in value]

    def question(self, doc: Mapping[str, Any]) -> str:
        choices = self.choices(doc)
        block = "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(choices))
        return _fill(self.prompt, {**doc, "choices_block": block})

    def targets(self, doc: Mapping[str, Any]) -> list[str]:
        """The continuations scored, in the order of the choices."""
        choices = self.choices(doc)
        return list(LETTERS[: len(choices)]) if self.style == "letters" else choices

    def answer(self, doc: Mapping[str, Any]) -> int:
        return gold_index(doc, self.choices(doc), self.answer_field)

    def requests(self, doc: dict, fewshot: Sequence[dict]) -> list[Loglikelihood]:
        shots = [(self.question(d), self.targets(d)[self.answer(d)]) for d in fewshot]
        conversation = turns(self.question(doc), shots)
        return [Loglikelihood(conversation, target) for target in self.targets(doc)]

    def process(self, doc: dict, results: Sequence[Any]) -> dict[str, float]:
        gold = self.answer(doc)
        logprobs = [r.logprob for r in results]
        out = {"acc": float(argmax(logprobs) == gold)}
        if self.style == "text":
            lengths = [len(" " + t) for t in self.targets(doc)]
            out["acc_norm"] = float(
                argmax([lp / n for lp, n in zip(logprobs, lengths, strict=True)]) == gold
            )
        return out


class GenerateTask(_Task):
    """A task scored on a generated answer (see the module's documentation)."""

    prompt: str = GENERATE_PROMPT
    #: the worked answer a few-shot example shows
    fewshot_answer: str = "{worked}"
    answer_field: str = "answer"
    until: tuple[str, ...] = ("Question:",)

    def __init__(
        self,
        *,
        max_gen_tokens: int = 256,
        answer_pattern: str | None = None,
        until: Sequence[str] | None = None,
        answer: str | None = None,
        fewshot_answer: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.max_gen_tokens = max_gen_tokens
        self.answer_pattern = answer_pattern
        if until is not None:
            self.until = tuple(until)
        if answer is not None:
            self.answer_field = answer
        if fewshot_answer is not None:
            self.fewshot_answer = fewshot_answer

    def requests(self, doc: dict, fewshot: Sequence[dict]) -> list[Generate]:
        shots = [(_fill(self.prompt, d), _fill(self.fewshot_answer, d)) for d in fewshot]
        conversation = turns(_fill(self.prompt, doc), shots)
        return [Generate(conversation, until=self.until, max_tokens=self.max_gen_tokens)]

    def process(self, doc: dict, results: Sequence[Any]) -> dict[str, float]:
        predicted = extract_answer(str(results[0]), self.answer_pattern)
        reference = doc.get(self.answer_field)
        hit = predicted is not None and normalize(predicted) == normalize(reference)
        return {"exact_match": float(hit)}

    def prediction(self, doc: dict, results: Sequence[Any]) -> str | None:
        """The answer read from the generation (written to samples.jsonl)."""
        return extract_answer(str(results[0]), self.answer_pattern)


# ----------------------------------------------------------------------- built-in tasks


class SampleMcq(ChoiceTask):
    """The embedded multiple-choice sample (offline)."""


class Mmlu(ChoiceTask):
    split, fewshot_split = "test", "dev"


class Ceval(ChoiceTask):
    split, fewshot_split = "val", "dev"


class Cmmlu(ChoiceTask):
    split, fewshot_split = "test", "dev"


class ArcEasy(ChoiceTask):
    style, split, fewshot_split = "text", "test", "train"


class Hellaswag(ChoiceTask):
    style, split, fewshot_split = "text", "validation", "train"
    prompt = "{question}"


class TextChoice(ChoiceTask):
    """TruthfulQA, BoolQ, WinoGrande, PIQA: the choices' texts scored, validation split."""

    style, split = "text", "validation"


class Gsm8k(GenerateTask):
    split, fewshot_split = "test", "train"


class SampleArith(GenerateTask):
    """The embedded arithmetic sample (offline)."""


# --------------------------------------------------------------------- YAML-declared tasks

_YAML_KEYS = {
    "task", "output_type", "dataset", "split", "fewshot_split", "prompt", "choices",
    "choice_style", "answer", "metric", "until", "max_gen_tokens", "answer_pattern",
    "fewshot_answer", "summary",
}  # fmt: skip


def is_task_file(spec: str) -> bool:
    """Whether a ``--tasks`` item names a YAML task file rather than a task record."""
    return spec.lower().endswith((".yaml", ".yml"))


def load_task_file(spec: str) -> tuple[str, str, Any]:
    """``(name, output_type, task)`` from a YAML task declaration.

    Keys: ``task`` (the name; default: the file's name), ``output_type``
    (``multiple_choice`` or ``generate``), ``dataset`` (a file beside the YAML or any dataset
    spec), ``split``, ``fewshot_split``, ``prompt`` (``str.format`` over the row's fields;
    ``{choices_block}`` is the lettered choices), ``choices`` (the field holding them, or a
    list), ``choice_style`` (``letters`` or ``text``), ``answer`` (the field holding the
    reference), and for ``generate``: ``until``, ``max_gen_tokens``, ``answer_pattern``,
    ``fewshot_answer``."""
    import yaml

    path = Path(spec).expanduser()
    if not path.is_file():
        raise ConfigError(f"task file {spec} does not exist", fix="check the path given to --tasks")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"task file {path} is not valid YAML", why=str(exc)) from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"task file {path} must hold a mapping of keys", fix="see plugins/eval/README.md"
        )
    unknown = sorted(set(data) - _YAML_KEYS)
    if unknown:
        raise ConfigError(
            f"task file {path}: unknown keys {', '.join(unknown)}",
            fix=f"the keys are {', '.join(sorted(_YAML_KEYS))}",
        )
    if not data.get("dataset"):
        raise ConfigError(f"task file {path} names no dataset", fix="add `dataset: FILE_OR_SPEC`")
    name = str(data.get("task") or path.stem)
    kind = str(data.get("output_type", "multiple_choice"))
    common = {
        "dataset": str(data["dataset"]),
        "split": data.get("split"),
        "fewshot_split": data.get("fewshot_split"),
        "prompt": data.get("prompt"),
        "answer": data.get("answer"),
        "base": str(path.parent),
    }
    if kind == "multiple_choice":
        task: Any = ChoiceTask(
            style=data.get("choice_style"), choices=data.get("choices"), **common
        )
    elif kind == "generate":
        task = GenerateTask(
            max_gen_tokens=int(data.get("max_gen_tokens", 256)),
            answer_pattern=data.get("answer_pattern"),
            until=data.get("until"),
            fewshot_answer=data.get("fewshot_answer") or "{%s}" % (data.get("answer") or "answer"),
            **common,
        )
    else:
        raise ConfigError(
            f"task file {path}: output_type {kind!r} is unknown",
            fix="use multiple_choice or generate",
        )
    return name, kind, task
