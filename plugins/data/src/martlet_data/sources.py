"""The dataset sources: ``local``, ``hf``, ``modelscope`` and ``named``.

Exactly one claims any spec (``can_read`` is cheap: it parses the spec and looks at the file
system and the registry, nothing more):

===============  =======================================================================
source           claims
===============  =======================================================================
``local``        an existing file or folder, or a name ending in .jsonl/.json/.csv/.parquet/.txt
                 or written as a path (``./x``, ``/x``, ``~/x``)
``named``        any other bare name (no ``/``): a registered dataset (an unknown one is an
                 error listing close names)
``hf``           ``hf::NAME``, or ``org/name`` unless the hub asked for is ModelScope
``modelscope``   ``ms::NAME``, or ``org/name`` when the hub asked for is ModelScope
===============  =======================================================================

``read(spec, streaming=False, **options)`` returns :class:`~martlet_data.rows.Rows` (a list of
canonical rows with a bad-row report) or, with ``streaming=True``, a
:class:`~martlet_data.rows.RowStream`. Options: see :class:`~martlet_data.options.ReadOptions`.
"""

from __future__ import annotations

import copy
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

from martlet.errors import ConfigError, UnknownNameError

from martlet_data.errors import BadRowReport, DataError
from martlet_data.options import ReadOptions
from martlet_data.readers import data_files, empty_reason, read_file
from martlet_data.rows import Preprocess, Rows, RowStream, canonical_rows, select
from martlet_data.spec import DatasetSpec, parse_spec

log = logging.getLogger("martlet.data")

RawFactory = Callable[[], Iterable[tuple[str, Any]]]


def _claimable(spec: str) -> DatasetSpec | None:
    try:
        return parse_spec(spec)
    except ConfigError:
        return None


class _Source:
    """What every source here shares."""

    def refusal(self, spec: str) -> ConfigError | None:
        """Why no source claims ``spec``: the selector's own error when it is malformed
        (``#0``), which core's :func:`martlet.load_dataset` reports instead of "no source
        can read"."""
        try:
            parse_spec(spec)
        except ConfigError as malformed:
            return malformed
        return None


def build(
    spec: DatasetSpec,
    raw: RawFactory,
    opts: ReadOptions,
    *,
    label: str,
    preprocess: Preprocess | None = None,
    keep: tuple[str, ...] = (),
    format: str | None = None,
    empty_why: Callable[[], str] | None = None,
) -> Rows | RowStream:
    """Rows (or a stream) of canonical rows from a factory of raw rows.

    Every source's rows come through here, so this is where a dataset that gives no rows is
    an :class:`~martlet_data.errors.EmptyDatasetError` naming ``label``: at once for a list,
    when a pass reaches the end for a stream. ``empty_why()`` says why a source with no raw
    rows has none ("the file is empty (0 bytes)", ...); it is called only then.
    """

    def make(
        report: BadRowReport, formats: Counter, trace: list[str] | None = None
    ) -> Iterator[dict]:
        return canonical_rows(
            raw(),
            report=report,
            formats=formats,
            format=opts.format or format,
            columns=opts.columns,
            keep=keep,
            preprocess=preprocess,
            preprocess_options=opts.preprocess_options() if preprocess else None,
            on_bad_rows=opts.on_bad_rows,
            trace=trace,
            prompts=opts.prompts,
            keep_columns=opts.keep_columns,
            source=label,
            empty_why=empty_why,
        )

    if opts.streaming:
        return RowStream(make, label, specs=(spec.text,), limit=spec.count)
    report, trace = BadRowReport(), []
    rows = list(make(report, Counter(), trace))
    report.log(label)
    picked = select(list(range(len(rows))), spec.count, opts.seed)
    formats = Counter(trace[i] for i in picked)
    seen: set[int] = set()
    out = []
    for i in picked:  # rows repeated by upsampling are copies, not the same objects
        out.append(rows[i] if i not in seen else copy.deepcopy(rows[i]))
        seen.add(i)
    return Rows(out, report, formats, specs=(spec.text,))


def _local_raw(files: list[Path], opts: ReadOptions) -> RawFactory:
    def raw() -> Iterator[tuple[str, Any]]:
        for file in files:
            yield from read_file(file, txt_unit=opts.txt_unit)

    return raw


def _local_empty(files: list[Path], root: Path) -> Callable[[], str]:
    def why() -> str:
        if len(files) == 1 and files[0] == root:
            return f"the file {empty_reason(files[0])}"
        shown = "; ".join(f"{f.relative_to(root)} {empty_reason(f)}" for f in files[:5])
        more = f"; and {len(files) - 5} more" if len(files) > 5 else ""
        files_hold = "file holds" if len(files) == 1 else "files hold"
        return f"its {len(files)} data {files_hold} no rows: {shown}{more}"

    return why


def _hub_empty(subsets: tuple[str, ...], split: str) -> Callable[[], str]:
    def why() -> str:
        where = f"split {split!r}"
        if subsets:
            noun = "subset" if len(subsets) == 1 else "subsets"
            where += f" of {noun} {', '.join(subsets)}"
        return f"its {where} has no rows"

    return why


class LocalSource(_Source):
    """Local files and folders: .jsonl, .json, .csv, .parquet, .txt."""

    def can_read(self, spec: str, *, hub: str | None = None) -> bool:
        parsed = _claimable(spec)
        return bool(parsed and parsed.hub is None and parsed.looks_like_path)

    def read(self, spec: str, streaming: bool = False, **options: Any) -> Rows | RowStream:
        opts = ReadOptions.from_options({**options, "streaming": streaming})
        parsed = parse_spec(spec)
        if parsed.subsets:
            raise ConfigError(
                f"local dataset {parsed.name!r} has no subsets (got :{'/'.join(parsed.subsets)})",
                fix="leave out ':SUBSET' for a local file or folder",
            )
        files = data_files(parsed.name)
        root = Path(os.path.expanduser(parsed.name))
        return build(
            parsed,
            _local_raw(files, opts),
            opts,
            label=parsed.name,
            empty_why=_local_empty(files, root),
        )


class HfSource(_Source):
    """Hugging Face dataset ids through ``datasets``: ``org/name`` or ``hf::name``."""

    def can_read(self, spec: str, *, hub: str | None = None) -> bool:
        parsed = _claimable(spec)
        if parsed is None:
            return False
        if parsed.hub is not None:
            return parsed.hub == "huggingface"
        from martlet_data.spec import normalize_hub

        try:
            wanted = normalize_hub(hub)
        except ConfigError:
            return False
        return (
            wanted in (None, "huggingface")
            and parsed.looks_like_hub_id
            and not parsed.looks_like_path
        )

    def read(self, spec: str, streaming: bool = False, **options: Any) -> Rows | RowStream:
        return _read_hub("huggingface", spec, streaming, options)


class ModelScopeSource(_Source):
    """ModelScope dataset ids through ``modelscope``: ``ms::org/name``, or ``org/name`` with
    ``hub="modelscope"``."""

    def can_read(self, spec: str, *, hub: str | None = None) -> bool:
        parsed = _claimable(spec)
        if parsed is None:
            return False
        if parsed.hub is not None:
            return parsed.hub == "modelscope"
        from martlet_data.spec import normalize_hub

        try:
            wanted = normalize_hub(hub)
        except ConfigError:
            return False
        return wanted == "modelscope" and parsed.looks_like_hub_id and not parsed.looks_like_path

    def read(self, spec: str, streaming: bool = False, **options: Any) -> Rows | RowStream:
        return _read_hub("modelscope", spec, streaming, options)


def _read_hub(hub: str, spec: str, streaming: bool, options: dict[str, Any]) -> Rows | RowStream:
    """A hub dataset id's rows (``hf::`` or ``ms::`` labels), for the two hub sources."""
    from martlet_data.hubs import hf_rows, ms_rows

    reader, prefix = (hf_rows, "hf") if hub == "huggingface" else (ms_rows, "ms")
    opts = ReadOptions.from_options({**options, "streaming": streaming})
    parsed = parse_spec(spec)
    split = opts.split or "train"
    raw = reader(
        parsed.name, parsed.subsets, split, streaming=opts.streaming, num_proc=opts.num_proc
    )
    return build(
        parsed,
        raw,
        opts,
        label=f"{prefix}::{parsed.name}",
        empty_why=_hub_empty(parsed.subsets, split),
    )


def package_path(path: str) -> Path:
    """A record's ``path``: ``"package:relative/file"`` inside an installed package, or a plain
    file system path."""
    package, sep, relative = path.partition(":")
    if sep and package.replace(".", "").replace("_", "").isalnum() and not os.path.exists(path):
        try:
            return Path(str(resources.files(package).joinpath(relative)))
        except ModuleNotFoundError as exc:
            raise DataError(
                f"dataset path {path!r} names package {package!r}, which is not installed",
                cause=exc,
            ) from None
    return Path(os.path.expanduser(path))


class NamedSource(_Source):
    """Registered datasets (``martlet_datasets`` records): embedded files, hub ids, or files
    registered with :func:`martlet.register_dataset`.

    A record's ``impl``, when set, is a preprocessor ``fn(row, **options) -> row`` (or a list of
    rows) applied to each raw row before conversion, with ``options`` holding ``model_name``
    and ``model_author``; its optional ``keep`` attribute lists extra columns to keep and its
    optional ``validate(**options)`` checks the options before anything is read. A record with
    neither ``path`` nor ``hub_ids`` has an ``impl`` that returns the raw rows:
    ``fn(**options) -> iterable of rows``.
    """

    def can_read(self, spec: str, *, hub: str | None = None) -> bool:
        parsed = _claimable(spec)
        return bool(
            parsed
            and parsed.hub is None
            and not parsed.looks_like_path
            and "/" not in parsed.name
            and "\\" not in parsed.name
        )

    def read(self, spec: str, streaming: bool = False, **options: Any) -> Rows | RowStream:
        from martlet.manager import get_manager

        from martlet_data.formats import normalize_format

        opts = ReadOptions.from_options({**options, "streaming": streaming})
        parsed = parse_spec(spec)
        try:
            record = get_manager().registry.get("datasets", parsed.name)
        except UnknownNameError as exc:
            raise UnknownNameError(
                f"unknown dataset {parsed.name!r}",
                why=exc.why or "it is not a registered name, a local path or an org/name hub id",
                fix="`martlet dataset list` shows the registered names; write a local file as "
                f"./{parsed.name}, and a hub dataset without an org as hf::{parsed.name}",
            ) from None
        impl = record.load() if record.impl else None
        try:
            format = normalize_format(record.format)
        except ValueError as exc:
            raise DataError(
                f"dataset {record.name!r} declares an unknown format {record.format!r}",
                why=str(exc),
                fix=f"report it to the plugin {record.origin}",
            ) from None
        label = record.name
        if not record.path and not record.hub_ids:
            rows_fn = impl

            def generated() -> Iterator[tuple[str, Any]]:
                for number, row in enumerate(rows_fn(**opts.preprocess_options()), 1):
                    yield f"dataset {record.name}, row {number}", row

            return build(
                parsed,
                generated,
                opts,
                label=label,
                format=format,
                empty_why=lambda: "its generator gave no rows",
            )
        validate = getattr(impl, "validate", None)
        if callable(validate):
            validate(**opts.preprocess_options())
        keep = tuple(getattr(impl, "keep", ()))
        if record.path:
            if parsed.subsets:
                raise ConfigError(
                    f"dataset {record.name!r} has no subsets (got :{'/'.join(parsed.subsets)})",
                    fix=f"use {record.name} without ':SUBSET'",
                )
            root = package_path(record.path)
            files = data_files(root)
            raw = _local_raw(files, opts)
            empty_why = _local_empty(files, root)
        else:
            hub, hub_id = self._hub(record, opts.hub)
            subsets = parsed.subsets or tuple(record.subsets)
            split = opts.split or (record.splits[0] if record.splits else "train")
            from martlet_data.hubs import hf_rows, ms_rows

            reader = hf_rows if hub == "huggingface" else ms_rows
            raw = reader(hub_id, subsets, split, streaming=opts.streaming, num_proc=opts.num_proc)
            label = f"{record.name} ({hub}::{hub_id})"
            empty_why = _hub_empty(subsets, split)
        return build(
            parsed,
            raw,
            opts,
            label=label,
            preprocess=impl,
            keep=keep,
            format=format,
            empty_why=empty_why,
        )

    @staticmethod
    def _hub(record: Any, wanted: str | None) -> tuple[str, str]:
        ids = {h: i for h, i in record.hub_ids.items() if i}
        if wanted and wanted in ids:
            return wanted, ids[wanted]
        for hub in ("huggingface", "modelscope"):
            if hub in ids:
                if wanted and wanted != hub:
                    log.info(
                        "dataset %s has no %s id; reading it from %s (%s)",
                        record.name,
                        wanted,
                        hub,
                        ids[hub],
                    )
                return hub, ids[hub]
        raise DataError(
            f"dataset {record.name!r} names no hub this plugin reads: {sorted(ids)}",
            fix="use huggingface or modelscope ids in its record",
        )
