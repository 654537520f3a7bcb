"""Task types: what head a model is loaded and trained with.

``causal_lm`` (a language-model head, the default) or ``seq_cls`` (a sequence-classification /
reward head; ``reward`` is an alias). Model loaders, tuners and ``infer`` share this vocabulary
(``--task-type``, as ms-swift calls it).
"""

from __future__ import annotations

from typing import Any

from martlet.errors import ConfigError

TASK_TYPES = {"causal_lm": "causal_lm", "seq_cls": "seq_cls", "reward": "seq_cls"}


def check_task_type(value: Any) -> str:
    """The canonical task type for ``value`` (case and ``-``/``_`` ignored).

    Raises:
        ConfigError: not one of ``causal_lm``, ``seq_cls``, ``reward``.
    """
    text = str(value).strip().lower().replace("-", "_")
    if text not in TASK_TYPES:
        raise ConfigError(
            f"unknown task_type {value!r}",
            why="a model has a language-model head (causal_lm) or a sequence classification "
            "/ reward head (seq_cls, also called reward)",
            fix=f"use one of: {', '.join(TASK_TYPES)}",
        )
    return TASK_TYPES[text]
