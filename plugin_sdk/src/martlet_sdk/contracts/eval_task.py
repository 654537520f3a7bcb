"""The contract of an eval task record: documents, well-formed requests, and metrics — the
record's own among them — for any answers."""

from __future__ import annotations

import math
from typing import Any

import pytest

from martlet_sdk.contracts.base import RecordContract


class EvalTaskContract(RecordContract):
    """An eval task: registration checks, the EvalTask shape, and its behaviour on a few
    documents: each document's requests are :class:`martlet.evaluation.Loglikelihood` or
    :class:`~martlet.evaluation.Generate` whose conversation ends with the question (with a
    few-shot example before it when one is given), and :meth:`process` turns any answers
    into finite metrics that include the record's ``metric``.

    The task is built as ``impl(**task_options)``; override the ``task_options`` fixture
    (default: ``{"dataset": record.dataset}``) to point it at a local file when the record's
    data comes from another plugin or a hub."""

    kind = "eval_tasks"
    interface = {"docs": None, "requests": None, "process": None}

    @pytest.fixture
    def task_options(self, record: Any) -> dict[str, Any]:
        return {"dataset": record.dataset}

    def test_documents_requests_and_metrics(
        self, record: Any, impl: Any, task_options: dict[str, Any]
    ) -> None:
        from martlet.evaluation import Generate, Loglikelihood, Scored

        task = impl(**task_options)
        docs = list(task.docs(limit=3))
        assert 0 < len(docs) <= 3, "docs(limit=3) gives one to three documents"
        assert all(isinstance(d, dict) for d in docs)
        for doc in docs:
            for shots in ([], docs[:1]):
                requests = task.requests(doc, shots)
                assert requests, "a document asks for at least one answer"
                for request in requests:
                    assert isinstance(request, (Loglikelihood, Generate)), request
                    assert request.turns and request.turns[-1]["role"] == "user"
                    assert len(request.turns) == 1 + 2 * len(shots), (
                        "each few-shot example is a user and an assistant turn"
                    )
            answers = [
                Scored(-float(i + 1), i == 0, 1) if isinstance(r, Loglikelihood) else ""
                for i, r in enumerate(requests)
            ]
            metrics = task.process(doc, answers)
            assert isinstance(metrics, dict) and metrics
            for name, value in metrics.items():
                assert isinstance(name, str) and math.isfinite(float(value)), (name, value)
            if record.metric:
                assert record.metric in metrics, f"the record's metric {record.metric!r}"
