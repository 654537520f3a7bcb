"""One task scored by one answerer: documents, few-shot examples, requests, answers, metrics."""

from __future__ import annotations

import random
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from martlet.errors import MartletError
from martlet.evaluation import Generate, Loglikelihood, turns

from martlet_eval.scoring import aggregate

#: the document fields written to samples.jsonl (what identifies and answers it)
SAMPLE_FIELDS = ("question", "choices", "answer", "subject")


@dataclass
class TaskRun:
    """A task's scores: ``metrics`` (each metric's mean, and ``n``), ``subjects`` (the same
    per subject) and one sample per document."""

    name: str
    output_type: str
    metrics: dict[str, float]
    subjects: dict[str, dict[str, float]] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)


def fewshot_for(
    index: int, pool: Sequence[dict], docs: Sequence[dict], k: int, seed: int
) -> list[dict]:
    """``k`` few-shot documents for document ``index``: drawn from ``pool`` (a dev split),
    or from the other documents when there is none; the same draw on every run."""
    if k <= 0:
        return []
    rng = random.Random(seed * 1_000_003 + index)
    if pool:
        return rng.sample(list(pool), min(k, len(pool)))
    others = [d for i, d in enumerate(docs) if i != index]
    return rng.sample(others, min(k, len(others)))


def _bar(total: int, name: str, show: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=name, unit="req", file=sys.stderr, disable=not show, leave=False)


def evaluate(
    name: str,
    task: Any,
    answerer: Any,
    *,
    limit: int | None = None,
    num_fewshot: int = 0,
    seed: int = 1234,
    progress: bool = True,
    output_type: str = "multiple_choice",
) -> TaskRun:
    """Score ``task`` (an :class:`martlet.interfaces.EvalTask`) with ``answerer``."""
    if not hasattr(task, "requests") and hasattr(task, "score"):
        return _legacy(name, task, answerer, limit=limit, progress=progress)
    docs = list(task.docs(limit))
    if not docs:
        raise MartletError(
            f"the task {name!r} has no documents to score",
            why="its data is empty, or --limit / its options left none",
            fix="check the task's data and options",
        )
    fewshot_docs = getattr(task, "fewshot_docs", None)
    pool = list(fewshot_docs()) if callable(fewshot_docs) and num_fewshot > 0 else []
    per_doc = [task.requests(doc, fewshot_for(i, pool, docs, num_fewshot, seed))
               for i, doc in enumerate(docs)]  # fmt: skip
    flat = [r for requests in per_doc for r in requests]
    scored = [r for r in flat if isinstance(r, Loglikelihood)]
    generated = [r for r in flat if isinstance(r, Generate)]
    if len(scored) + len(generated) != len(flat):
        odd = next(r for r in flat if not isinstance(r, (Loglikelihood, Generate)))
        raise MartletError(
            f"the task {name!r} asked for a {type(odd).__name__}",
            why="a request is a martlet.evaluation.Loglikelihood or Generate",
        )
    bar = _bar(len(flat), name, progress)
    try:
        answers_ll = iter(answerer.loglikelihood(scored, bar.update) if scored else [])
        answers_gen = iter(answerer.generate(generated, bar.update) if generated else [])
    finally:
        bar.close()
    metrics, subjects, samples = [], [], []
    subject_of = getattr(task, "subject", None) or (lambda doc: doc.get("subject"))
    for i, (doc, requests) in enumerate(zip(docs, per_doc, strict=True)):
        answers = [next(answers_ll) if isinstance(r, Loglikelihood) else next(answers_gen)
                   for r in requests]  # fmt: skip
        result = {k: float(v) for k, v in task.process(doc, answers).items()}
        metrics.append(result)
        subjects.append(subject_of(doc))
        samples.append(_sample(name, i, doc, requests, answers, result, task, answerer))
    total, per_subject = aggregate(metrics, subjects)
    return TaskRun(name, output_type, total, per_subject, samples)


def _sample(
    name: str,
    index: int,
    doc: dict,
    requests: Sequence[Any],
    answers: Sequence[Any],
    metrics: dict[str, float],
    task: Any,
    answerer: Any,
) -> dict[str, Any]:
    out: dict[str, Any] = {"task": name, "doc_id": index}
    out.update({k: doc[k] for k in SAMPLE_FIELDS if k in doc})
    if requests:
        out["prompt"] = answerer.context(requests[0].turns)
    if requests and isinstance(requests[0], Loglikelihood):
        out["targets"] = [r.continuation for r in requests]
        out["logprobs"] = [a.logprob for a in answers]
        out["greedy"] = [a.greedy for a in answers]
        best = max(range(len(answers)), key=lambda j: (answers[j].logprob, -j))
        out["prediction"] = requests[best].continuation
    else:
        out["generation"] = answers[0] if answers else None
        predict = getattr(task, "prediction", None)
        if callable(predict):
            out["prediction"] = predict(doc, answers)
    out["metrics"] = metrics
    return out


def _legacy(name: str, task: Any, answerer: Any, *, limit: int | None, progress: bool) -> TaskRun:
    """A task of the first, provisional shape (``examples(limit)`` and ``score(predictions,
    examples)``): each example's ``prompt`` (or last user message) answered by generation,
    the predictions scored together. Deprecated: write ``docs``/``requests``/``process``."""
    warnings.warn(
        f"the eval task {name!r} has the provisional shape (examples/score); write docs, "
        "requests and process (martlet.interfaces.EvalTask) — it will stop working in a "
        "later plugin API",
        DeprecationWarning,
        stacklevel=2,
    )
    examples = list(task.examples(limit))
    requests = []
    for example in examples:
        prompt = example.get("prompt")
        if prompt is None:
            users = [m for m in example.get("messages", []) if m.get("role") == "user"]
            prompt = users[-1]["content"] if users else ""
        requests.append(Generate(turns(str(prompt)), max_tokens=256))
    bar = _bar(len(requests), name, progress)
    try:
        predictions = answerer.generate(requests, bar.update)
    finally:
        bar.close()
    scores = {k: float(v) for k, v in task.score(predictions, examples).items()}
    scores["n"] = len(examples)
    samples = [{"task": name, "doc_id": i, "generation": p} for i, p in enumerate(predictions)]
    return TaskRun(name, "generate", scores, {}, samples)
