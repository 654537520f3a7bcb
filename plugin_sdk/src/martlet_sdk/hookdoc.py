"""The hook and record reference of ``docs/plugins.md``, generated from the code.

``python -m martlet_sdk.hookdoc docs/plugins.md`` rewrites the parts between the
``<!-- hooks:start -->``/``<!-- hooks:end -->`` and ``<!-- records:start -->``/
``<!-- records:end -->`` markers; a test fails when the file is out of step with
:mod:`martlet.hookspecs` or :mod:`martlet.records`.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import sys
import typing
from pathlib import Path

from martlet import hookspecs, records


def hook_functions() -> list:
    """The hook specs, in the order ``hookspecs.py`` defines them."""
    funcs = [
        f
        for name, f in vars(hookspecs).items()
        if name.startswith("martlet_") and inspect.isfunction(f)
    ]
    return sorted(funcs, key=lambda f: f.__code__.co_firstlineno)


def signature(func) -> str:
    """``def martlet_tuners() -> Iterable[TunerRecord]`` as written in ``hookspecs.py``."""
    sig = inspect.signature(func)
    text = str(sig).replace("'", "").replace("r.", "")
    return f"def {func.__name__}{text}"


def _docstring_markdown(doc: str) -> str:
    lines = inspect.cleandoc(doc).splitlines()
    out: list[str] = []
    in_code = False
    for line in lines:
        if line.rstrip().endswith("::"):
            out.append(line.rstrip()[:-1])
            out.append("")
            out.append("```python")
            in_code = True
            continue
        if in_code:
            if line.strip() == "" and out[-1] == "```python":
                continue
            if line.startswith("    ") or line.strip() == "":
                out.append(line[4:])
                continue
            while out and out[-1] == "":
                out.pop()
            out.append("```")
            in_code = False
        out.append(line)
    if in_code:
        while out and out[-1] == "":
            out.pop()
        out.append("```")
    text = "\n".join(out)
    return re.sub(r":\w+:`~?([^`]+)`", lambda m: f"`{m.group(1).split('.')[-1]}`", text)


def render_hooks() -> str:
    parts = []
    for func in hook_functions():
        parts.append(f"### `{func.__name__}`\n\n```python\n{signature(func)}\n```\n")
        parts.append(_docstring_markdown(func.__doc__ or "") + "\n")
    return "\n".join(parts)


def _type_text(tp) -> str:
    text = tp if isinstance(tp, str) else getattr(tp, "__name__", str(tp))
    return str(text).replace("typing.", "")


def render_records() -> str:
    rows = ["| kind | hook | record | fields of its own |", "|---|---|---|---|"]
    for kind, cls in records.KINDS.items():
        base = {f.name for f in dataclasses.fields(records.Record)}
        own = [f for f in dataclasses.fields(cls) if f.name not in base]
        hints = typing.get_type_hints(cls)
        fields = ", ".join(f"`{f.name}: {_type_text(hints[f.name])}`" for f in own) or "—"
        rows.append(f"| `{kind}` | `{records.hook_name(kind)}` | `{cls.__name__}` | {fields} |")
    common = ", ".join(
        f"`{f.name}`" for f in dataclasses.fields(records.Record) if f.name != "origin"
    )
    return (
        f"Every record has {common} (see `Record` in `martlet/records.py`); "
        "`origin` is filled in by the plugin manager.\n\n" + "\n".join(rows) + "\n"
    )


def _replace(text: str, name: str, body: str) -> str:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start not in text or end not in text:
        raise ValueError(f"markers {start} / {end} not found")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n\n{body}\n{end}{tail}"


def render(text: str) -> str:
    """``text`` (the guide) with its generated sections brought up to date."""
    return _replace(_replace(text, "hooks", render_hooks()), "records", render_records())


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0] if args else "docs/plugins.md")
    path.write_text(render(path.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"updated {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
