"""Options: :class:`DatasetReadOptions`, the core's read options with this plugin's formats
checked (``martlet dataset info|prepare``), and :class:`ReadOptions`, what one of this plugin's
dataset sources' ``read`` accepts.

A training command's data options are martlet-train's ``TrainDataOptions``, built on the core's
:class:`martlet.options.DatasetReadOptions`; aliases are ms-swift's spellings.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from martlet.errors import ConfigError
from martlet.options import DEFAULT_SEED, check_columns, check_names
from martlet.options import DatasetReadOptions as CoreReadOptions

from martlet_data.formats import normalize_format
from martlet_data.spec import normalize_hub

BAD_ROWS = ("error", "skip")


@dataclass(kw_only=True)
class ReadOptions:
    """What a dataset source's ``read(spec, **options)`` accepts; unknown names are errors.

    Attributes:
        streaming: read lazily (a :class:`~martlet_data.rows.RowStream`).
        columns: rename raw columns first, ``{"their_name": "our_name"}``; targets that are no
            format field are kept in the canonical rows.
        on_bad_rows: ``"error"`` (stop at the first bad row) or ``"skip"`` (skip and report).
        format: force the input format (``alpaca``, ``sharegpt``, ...) instead of detecting it.
        hub: ``"huggingface"`` or ``"modelscope"`` for hub ids and registered datasets.
        split: the split to read from a hub (default: the dataset's first split, or train).
        seed: the seed of ``#N`` sampling.
        model_name, model_author: for ``self-cognition`` (one or two names each).
        txt_unit: ``"line"`` or ``"paragraph"``: what one row of a ``.txt`` file is.
        num_proc: processes for preparing a hub dataset (``datasets``' ``num_proc``).
        prompts: the rows are questions to answer (inference, evaluation): an answer is
            optional and, when present, becomes the row's ``reference``.
        keep_columns: carry every other column of a row into its canonical row (a prompt's
            ``solution``, ``answer``: what online RL's reward functions read).
    """

    streaming: bool = False
    columns: dict[str, str] | None = None
    on_bad_rows: str = "error"
    format: str | None = None
    hub: str | None = None
    split: str | None = None
    seed: int = DEFAULT_SEED
    model_name: tuple[str, ...] = ()
    model_author: tuple[str, ...] = ()
    txt_unit: str = "line"
    num_proc: int | None = None
    prompts: bool = False
    keep_columns: bool = False

    def __post_init__(self) -> None:
        self.columns = check_columns(self.columns)
        if self.on_bad_rows not in BAD_ROWS:
            raise ConfigError(
                f"on_bad_rows must be 'error' or 'skip', got {self.on_bad_rows!r}",
                fix="--on-bad-rows skip skips bad rows and reports them; error stops at the first",
            )
        try:
            self.format = normalize_format(self.format)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self.hub = normalize_hub(self.hub)
        self.model_name = check_names(self.model_name, "--model-name")
        self.model_author = check_names(self.model_author, "--model-author")
        if self.txt_unit not in ("line", "paragraph"):
            raise ConfigError(f"txt_unit must be 'line' or 'paragraph', got {self.txt_unit!r}")
        if not isinstance(self.seed, int):
            raise ConfigError(f"seed must be an integer, got {self.seed!r}")

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> ReadOptions:
        """Build from ``read``'s keyword options.

        Raises:
            ConfigError: an unknown option (with the closest name) or a bad value.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = [k for k in options if k not in names]
        if unknown:
            close = difflib.get_close_matches(unknown[0], sorted(names), n=1)
            raise ConfigError(
                f"unknown dataset option {unknown[0]!r}",
                why=f"did you mean {close[0]!r}?" if close else None,
                fix=f"known options: {', '.join(sorted(names))}",
            )
        return cls(**options)

    def preprocess_options(self) -> dict[str, Any]:
        """What a registered dataset's preprocessor receives."""
        return {"model_name": self.model_name, "model_author": self.model_author}


@dataclass(kw_only=True)
class DatasetReadOptions(CoreReadOptions):
    """Which datasets to read, and how.

    The core's read options (:class:`martlet.options.DatasetReadOptions`) with
    ``--dataset-format`` checked against this plugin's formats: the options of ``martlet
    dataset info|prepare``."""

    def __post_init__(self) -> None:
        try:
            normalize_format(self.dataset_format)
        except ValueError as exc:
            raise ConfigError(f"--dataset-format: {exc}") from None
        super().__post_init__()
