"""Raw rows of local files, read lazily, each with where it came from.

Every reader is a generator of ``(where, row)``: ``where`` names the file and the line (or
item, or row) for error messages, and ``row`` is the raw mapping — or a
:class:`~martlet_data.errors.RowProblem` for a row that could not even be parsed (a malformed
JSON line), so the caller decides whether to stop or to skip it.

=========  ====================================================================================
suffix     what a row is
=========  ====================================================================================
.jsonl     one JSON object per line (blank lines ignored); read line by line
.json      a JSON array of objects (streamed item by item), or an object of equal-length
           arrays (columnar; parsed whole)
.csv       one record per row under a header line; cells are text (JSON text in list-valued
           columns such as ``messages`` is parsed by the converters)
.parquet   one row per table row; read in record batches
.txt       one ``{"text": ...}`` row per non-empty line; with ``txt_unit="paragraph"``, one per
           paragraph (lines separated by blank lines)
=========  ====================================================================================
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from martlet_data.errors import DataError, RowProblem
from martlet_data.spec import SUFFIXES

RawRow = tuple[str, Any]
_CHUNK = 1 << 20


def data_files(path: str | os.PathLike) -> list[Path]:
    """The data files of ``path``: itself, or every file with a known suffix under a folder
    (recursively, sorted, hidden files and folders left out).

    Raises:
        DataError: the path does not exist, has an unknown suffix, or the folder has no data.
    """
    p = Path(os.path.expanduser(str(path)))
    if p.is_dir():
        files = sorted(
            f
            for f in p.rglob("*")
            if f.is_file()
            and f.suffix.lower() in SUFFIXES
            and not any(part.startswith(".") for part in f.relative_to(p).parts)
        )
        if not files:
            raise DataError(
                f"folder {str(path)!r} holds no data files",
                why=f"looked for {', '.join(SUFFIXES)} files in it and its subfolders",
                fix="point --dataset at a folder with data files, or at one file",
            )
        return files
    if not p.exists():
        raise DataError(
            f"dataset file {str(path)!r} does not exist",
            fix="check the path (relative paths start from the current folder)",
        )
    if p.suffix.lower() not in SUFFIXES:
        raise DataError(
            f"cannot read {str(path)!r}: unknown file type {p.suffix or '(none)'!r}",
            fix=f"use one of {', '.join(SUFFIXES)}",
        )
    return [p]


def read_file(path: Path, *, txt_unit: str = "line") -> Iterator[RawRow]:
    """The raw rows of one file (see the table above)."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return read_jsonl(path)
    if suffix == ".json":
        return read_json(path)
    if suffix == ".csv":
        return read_csv(path)
    if suffix == ".parquet":
        return read_parquet(path)
    return read_txt(path, unit=txt_unit)


def empty_reason(path: Path) -> str:
    """Why a data file that gave no raw rows has none, as a predicate of it ("is 0 bytes",
    "holds only blank lines", ...). Looks at the file again: call it only to explain."""
    try:
        if path.stat().st_size == 0:
            return "is empty (0 bytes)"
        suffix = path.suffix.lower()
        if suffix == ".json":
            first = _first_char(path)
            if first == "[":
                return "is an empty JSON array"
            if first == "{":
                return "is a JSON object of empty columns"
            return "holds only whitespace"
        if suffix == ".csv":
            with open(path, encoding="utf-8-sig", newline="") as fh:
                if csv.DictReader(fh).fieldnames:
                    return "has a header line and no data rows"
        if suffix == ".parquet":
            return "holds a table of 0 rows"
    except (OSError, UnicodeDecodeError, csv.Error):
        return "holds no rows"
    return "holds only blank lines"


def read_jsonl(path: Path) -> Iterator[RawRow]:
    with open(path, "rb") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}, line {number}"
            try:
                row = json.loads(line)
            except UnicodeDecodeError as exc:
                yield where, RowProblem("malformed JSON", f"not UTF-8 text ({exc.reason})")
                continue
            except json.JSONDecodeError as exc:
                yield where, RowProblem("malformed JSON", f"{exc.msg} (column {exc.colno})")
                continue
            if not isinstance(row, dict):
                yield (
                    where,
                    RowProblem(
                        "wrong type", f"a line must hold a JSON object, got {type(row).__name__}"
                    ),
                )
                continue
            yield where, row


def _first_char(path: Path) -> str:
    with open(path, encoding="utf-8-sig") as fh:
        while True:
            chunk = fh.read(4096)
            if not chunk:
                return ""
            stripped = chunk.lstrip()
            if stripped:
                return stripped[0]


def read_json(path: Path) -> Iterator[RawRow]:
    first = _first_char(path)
    if first == "":  # 0 bytes or only whitespace: no rows (the caller says so)
        return
    if first == "[":
        yield from _read_json_array(path)
        return
    if first != "{":
        raise DataError(
            f"{path} is not a JSON array or object",
            why="a .json dataset is an array of row objects, or an object of equal-length "
            "arrays (one per column)",
            fix="write it that way, or as JSON Lines (.jsonl): one object per line",
        )
    try:
        with open(path, encoding="utf-8-sig") as fh:
            data = json.load(fh)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{path}: malformed JSON at line {exc.lineno}, column {exc.colno}",
            why=exc.msg,
            fix="fix the file (a JSON array cannot skip a broken item; JSON Lines can)",
        ) from None
    lengths = {k: len(v) for k, v in data.items() if isinstance(v, list)}
    if not data or len(lengths) != len(data) or len(set(lengths.values())) != 1:
        found = ", ".join(f"{k}: {lengths.get(k, type(v).__name__)}" for k, v in data.items())
        raise DataError(
            f"{path} holds a JSON object that is not columnar",
            why="an object must map every column to an array, all of one length; "
            f"found {found or 'no columns'}",
            fix="write a JSON array of row objects, or JSON Lines (.jsonl)",
        )
    columns = list(data)
    for i in range(next(iter(lengths.values()))):
        yield f"{path}, row {i + 1}", {c: data[c][i] for c in columns}


def _read_json_array(path: Path) -> Iterator[RawRow]:
    """Items of a top-level JSON array, decoded one at a time from a moving buffer."""
    decoder = json.JSONDecoder()
    with open(path, encoding="utf-8-sig") as fh:
        buf, pos, eof, line, index = "", 0, False, 1, 0

        def fill() -> bool:
            nonlocal buf, pos, eof
            chunk = fh.read(_CHUNK)
            if not chunk:
                eof = True
                return False
            buf = buf[pos:] + chunk
            pos = 0
            return True

        def skip_ws() -> str:
            nonlocal pos, line
            while True:
                while pos < len(buf) and buf[pos] in " \t\r\n":
                    if buf[pos] == "\n":
                        line += 1
                    pos += 1
                if pos < len(buf) or not fill():
                    return buf[pos] if pos < len(buf) else ""

        def broken(what: str) -> DataError:
            return DataError(
                f"{path}: malformed JSON at item {index + 1} (line {line})",
                why=what,
                fix="fix the file (a JSON array cannot skip a broken item; JSON Lines can)",
            )

        fill()
        if skip_ws() != "[":
            raise broken("expected '[' to open the array")
        pos += 1
        while True:
            ch = skip_ws()
            if ch == "]":
                return
            if index:
                if ch != ",":
                    raise broken(f"expected ',' or ']' between items, found {ch or 'the end'!r}")
                pos += 1
                skip_ws()
            while True:
                try:
                    item, end = decoder.raw_decode(buf, pos)
                    if end < len(buf) or eof:
                        break
                except json.JSONDecodeError as exc:
                    if eof:
                        raise broken(exc.msg) from None
                if not fill():
                    continue
            where = f"{path}, item {index + 1} (line {line})"
            line += buf.count("\n", pos, end)
            pos = end
            index += 1
            if isinstance(item, dict):
                yield where, item
            else:
                yield (
                    where,
                    RowProblem(
                        "wrong type", f"an item must be a JSON object, got {type(item).__name__}"
                    ),
                )


def read_csv(path: Path) -> Iterator[RawRow]:
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None:
            return
        start = reader.line_num + 1
        for record in reader:
            where = f"{path}, line {start}"
            start = reader.line_num + 1
            if None in record:
                yield (
                    where,
                    RowProblem(
                        "wrong type",
                        f"the row has {len(reader.fieldnames) + len(record[None])} fields, "
                        f"the header {len(reader.fieldnames)}",
                    ),
                )
                continue
            yield where, {k: (None if v is None else v) for k, v in record.items()}


def read_parquet(path: Path) -> Iterator[RawRow]:
    import pyarrow.parquet as pq

    try:
        file = pq.ParquetFile(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a bad file
        raise DataError(f"cannot read parquet file {path}", why=str(exc)) from exc
    number = 0
    for batch in file.iter_batches(batch_size=1024):
        for row in batch.to_pylist():
            number += 1
            yield f"{path}, row {number}", row


def read_txt(path: Path, *, unit: str = "line") -> Iterator[RawRow]:
    if unit not in ("line", "paragraph"):
        raise DataError(f"txt_unit must be 'line' or 'paragraph', got {unit!r}")
    with open(path, encoding="utf-8", errors="strict") as fh:
        para: list[str] = []
        para_start = 0
        try:
            for number, line in enumerate(fh, 1):
                text = line.rstrip("\r\n")
                if unit == "line":
                    if text.strip():
                        yield f"{path}, line {number}", {"text": text}
                    continue
                if text.strip():
                    if not para:
                        para_start = number
                    para.append(text)
                elif para:
                    yield f"{path}, line {para_start}", {"text": "\n".join(para)}
                    para = []
        except UnicodeDecodeError as exc:
            raise DataError(f"{path} is not UTF-8 text", why=str(exc)) from None
        if para:
            yield f"{path}, line {para_start}", {"text": "\n".join(para)}
