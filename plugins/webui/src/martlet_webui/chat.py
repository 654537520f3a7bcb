"""The Chat tab's model: a base model or a run's trained result, loaded in the UI's process
through the core (:func:`martlet.load_model` or :func:`martlet.runs.load_run`, then
:func:`martlet.load_template` and :func:`martlet.load_engine`), answering streamed.

The template is chosen as ``martlet infer`` chooses it: a run's own template and system
prompt, else the model's (``auto``); prompts are not truncated. One model is kept loaded at a
time; choosing another loads it in place of the first.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from martlet.errors import ConfigError, MartletError, brief

#: capabilities the engine must claim: generation in this process, piece by piece
NEEDS = ("batch", "stream")


class Chat:
    """Answers conversations with one loaded model (or run) at a time."""

    def __init__(self) -> None:
        self._key: tuple[str, str] | None = None
        self._engine: Any = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> tuple[str, str] | None:
        """``(model, run directory)`` of what is loaded now, or None."""
        return self._key

    def engine(self, model: str, adapters: str) -> Any:
        """The engine for ``adapters`` (a run directory) or else ``model``, loaded now unless
        it is the one loaded already.

        Raises:
            MartletError: neither is given, the run or model cannot be loaded, or no installed
                inference backend generates in this process.
        """
        key = (model.strip(), adapters.strip())
        if not key[0] and not key[1]:
            raise ConfigError(
                "nothing to chat with", fix="choose a model, or a run directory of a training run"
            )
        with self._lock:
            if self._key != key:
                self._engine, self._key = None, None  # the old model goes before the new loads
                self._engine = _load(*key)
                self._key = key
            return self._engine

    def stream(
        self,
        model: str,
        adapters: str,
        messages: Sequence[Mapping[str, str]],
        generation: Mapping[str, Any],
    ) -> Iterator[str]:
        """The answer to ``messages``, growing: each item is the whole answer so far."""
        engine = self.engine(model, adapters)
        answer = ""
        try:
            for piece in engine.stream([dict(m) for m in messages], **dict(generation)):
                answer += piece
                yield answer
        except MartletError:
            raise
        except Exception as exc:  # noqa: BLE001 - a library's failure, with what to do
            raise MartletError(
                "the model failed while answering",
                why=brief(exc),
                fix="check the generation settings, or load the model again",
                cause=exc,
            ) from exc


def _load(model: str, adapters: str) -> Any:
    import martlet

    options: dict[str, Any] = {}
    template_name = None
    try:
        if adapters:
            from martlet.runs import load_run

            loaded, tokenizer, run = load_run(adapters)
            template_name, options = run.answered_with(None, options, None)
        else:
            loaded, tokenizer = martlet.load_model(model)
        options["max_length"] = None  # prompts are not truncated for chatting
        template = martlet.load_template(tokenizer, template_name, **options)
        return martlet.load_engine(loaded, tokenizer, needs=NEEDS, template=template)
    except MartletError:
        raise
    except Exception as exc:  # noqa: BLE001 - a library's failure, with what to do
        what = f"the run {adapters}" if adapters else f"the model {model}"
        raise MartletError(
            f"cannot load {what} for chatting",
            why=brief(exc),
            fix="check the model name or folder (a hub model must be downloaded first: "
            "`martlet download`), or the run directory",
            cause=exc,
        ) from exc
