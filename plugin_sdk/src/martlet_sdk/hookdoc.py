"""The generated references of ``docs/plugins.md``, rendered from the code's docstrings.

``python -m martlet_sdk.hookdoc docs/plugins.md`` rewrites the part between each pair of
``<!-- NAME:start -->``/``<!-- NAME:end -->`` markers:

- ``hooks``: every hook spec of :mod:`martlet.hookspecs`, its signature and docstring;
- ``records``: the table of :data:`martlet.records.KINDS` and their fields;
- ``interfaces``: per kind, what ``record.load()`` returns and what the implementation
  receives and returns: the per-kind list of :mod:`martlet.interfaces`' docstring, and the
  protocol it names with its methods' docstrings;
- ``registry``: :mod:`martlet.registry`'s docstring, the public methods of
  :class:`~martlet.registry.Registry`, the module-level functions, and the public methods of
  :class:`~martlet.records.Record`.

A test fails when the file is out of step with the code.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import sys
import typing
from pathlib import Path
from typing import Any

from martlet import hookspecs, interfaces, records, registry


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


def _docstring_markdown(doc: str, *, qualified: bool = False) -> str:
    """An RST docstring as markdown: ``::`` blocks become python code blocks and roles become
    code (the last dotted part; with ``qualified``, the whole name unless written ``~``)."""
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
            out += ["```", ""]  # the text after the block is a paragraph of its own
            in_code = False
        out.append(line)
    if in_code:
        while out and out[-1] == "":
            out.pop()
        out.append("```")
    text = "\n".join(out)
    if qualified:
        return re.sub(
            r":\w+:`(~?)([^`]+)`",
            lambda m: f"`{m.group(2).split('.')[-1] if m.group(1) else m.group(2)}`",
            text,
        )
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


# ------------------------------------------------------------------ docstrings as markdown

_SECTION = re.compile(r"^(Args|Arguments|Attributes|Raises|Returns|Yields):\s*$")
_ENTRY = re.compile(r"^(\*{0,2}\w[\w.]*)(?: \(([^)]*)\))?: (.*)$")


def _google_lists(text: str) -> str:
    """Google-style sections (``Raises:`` and indented ``Name: text`` entries) as markdown
    lists; a section of plain text becomes one paragraph."""
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        match = _SECTION.match(lines[i])
        block: list[str] = []
        j = i + 1
        while match and j < len(lines):
            if lines[j].startswith("    "):
                block.append(lines[j][4:])
            elif not lines[j].strip() and j + 1 < len(lines) and lines[j + 1].startswith("    "):
                block.append("")
            else:
                break
            j += 1
        if not match or not block:
            out.append(lines[i])
            i += 1
            continue
        if not _ENTRY.match(block[0]):
            out.append(f"{match.group(1)}: " + " ".join(b.strip() for b in block if b.strip()))
        else:
            out += [f"{match.group(1)}:", ""]
            for line in block:
                entry = None if line.startswith(" ") else _ENTRY.match(line)
                if entry:
                    name, kind, rest = entry.groups()
                    kind_text = f" ({kind})" if kind else ""
                    out.append(f"- `{name}`{kind_text}: {rest}")
                elif line.strip():
                    out.append("  " + line.strip())
        i = j
    return "\n".join(out)


def _markdown(doc: str | None, *, skip_summary: bool = False) -> str:
    """A docstring (Google-style sections, RST roles and ``::`` blocks) as markdown."""
    text = inspect.cleandoc(doc or "")
    if skip_summary:
        text = text.split("\n\n", 1)[1] if "\n\n" in text else ""
    return _docstring_markdown(_google_lists(text), qualified=True).strip()


def _bullet(name: str, doc: str | None) -> str:
    """``- `name`: doc``, later paragraphs indented under the item."""
    body = _markdown(doc).splitlines() or [""]
    lines = [f"- `{name}`: {body[0]}".rstrip()]
    lines += [f"  {line}" if line.strip() else "" for line in body[1:]]
    return "\n".join(lines)


def _annotation_text(sig: inspect.Signature) -> str:
    return str(sig).replace("'", "")


def _stub_line(name: str, member: Any) -> str:
    """One line of a class stub: ``def name(self, ...) -> T: ...`` as written in the code."""
    if isinstance(member, property):
        sig = inspect.signature(member.fget)
        return f"    @property\n    def {name}{_annotation_text(sig)}: ..."
    return f"    def {name}{_annotation_text(inspect.signature(member))}: ..."


def _public_members(cls: type) -> list[tuple[str, Any]]:
    """The public methods and properties ``cls`` itself defines (``__call__`` counts), in the
    order of the source."""
    found = []
    for name, member in vars(cls).items():
        if name.startswith("_") and name != "__call__":
            continue
        func = member.fget if isinstance(member, property) else member
        if inspect.isfunction(func):
            found.append((name, member, func.__code__.co_firstlineno))
    return [(name, member) for name, member, _ in sorted(found, key=lambda t: t[2])]


def _class_reference(cls: type, *, base: str = "", skip_summary: bool = False) -> str:
    """A class's docstring, a stub with its public attributes and methods as written in the
    code, and each method's docstring as a list item."""
    members = _public_members(cls)
    stub = [f"class {cls.__name__}{f'({base})' if base else ''}:"]
    own = getattr(cls, "__annotations__", {})
    if base == "Protocol":
        stub += [f"    {name}: {str(tp).replace(chr(39), '')}" for name, tp in own.items()]
    stub += [_stub_line(name, member) for name, member in members]
    parts = []
    text = _markdown(cls.__doc__, skip_summary=skip_summary)
    if text:
        parts.append(text)
    parts.append("```python\n" + "\n".join(stub) + "\n```")
    bullets = [_bullet(name, getattr(m, "fget", m).__doc__) for name, m in members]
    parts.append("\n".join(bullets))
    return "\n\n".join(parts)


# ------------------------------------------------------------------ interfaces


def interface_entries() -> dict[str, str]:
    """Kind -> its entry in the per-kind list of :mod:`martlet.interfaces`' docstring (the
    text, dedented), in the order of :data:`martlet.records.KINDS`.

    Raises:
        ValueError: a kind has no entry.
    """
    entries: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in inspect.cleandoc(interfaces.__doc__ or "").splitlines():
        if line in records.KINDS:
            current = entries.setdefault(line, [])
        elif current is not None and line.startswith("    "):
            current.append(line[4:])
        else:
            current = None
    missing = [kind for kind in records.KINDS if kind not in entries]
    if missing:
        raise ValueError(f"martlet/interfaces.py's docstring has no entry for {missing}")
    return {kind: "\n".join(entries[kind]) for kind in records.KINDS}


def interface_protocol(entry: str) -> type | None:
    """The protocol of :mod:`martlet.interfaces` an entry names first (``:class:`Tuner```)."""
    for name in re.findall(r":class:`~?([\w.]+)`", entry):
        found = getattr(interfaces, name.split(".")[-1], None)
        if isinstance(found, type) and getattr(found, "_is_protocol", False):
            return found
    return None


def other_protocols() -> list[type]:
    """The protocols of :mod:`martlet.interfaces` no kind's implementation is (contracts
    between plugins, such as the training loop's ``Objective``), in the order of the source."""
    named = {interface_protocol(e) for e in interface_entries().values()}
    found = [
        obj
        for obj in vars(interfaces).values()
        if isinstance(obj, type)
        and getattr(obj, "_is_protocol", False)
        and obj.__module__ == interfaces.__name__
        and obj not in named
    ]
    return sorted(found, key=lambda c: inspect.getsourcelines(c)[1])


def render_interfaces() -> str:
    parts = []
    for kind, entry in interface_entries().items():
        parts.append(f"### `{kind}`\n")
        parts.append("`record.load()` returns " + _markdown(entry) + "\n")
        protocol = interface_protocol(entry)
        if protocol is not None:
            parts.append(_class_reference(protocol, base="Protocol") + "\n")
    for protocol in other_protocols():
        parts.append(f"### `{protocol.__name__}` (not a kind)\n")
        parts.append(_class_reference(protocol, base="Protocol") + "\n")
    return "\n".join(parts)


# ------------------------------------------------------------------ registry


def registry_functions() -> list[Any]:
    """The public functions :mod:`martlet.registry` defines, in the order of the source."""
    funcs = [
        f
        for name, f in vars(registry).items()
        if not name.startswith("_") and inspect.isfunction(f) and f.__module__ == registry.__name__
    ]
    return sorted(funcs, key=lambda f: f.__code__.co_firstlineno)


def registry_methods() -> list[str]:
    """The public methods of :class:`~martlet.registry.Registry`, in the order of the source."""
    return [name for name, _ in _public_members(registry.Registry)]


def render_registry() -> str:
    funcs = registry_functions()
    stub = "\n".join(
        f"def {f.__name__}{_annotation_text(inspect.signature(f))}: ..." for f in funcs
    )
    return (
        "\n\n".join(
            [
                _markdown(registry.__doc__, skip_summary=True),
                "### `martlet.registry` functions",
                f"```python\n{stub}\n```",
                "\n".join(_bullet(f.__name__, f.__doc__) for f in funcs),
                "### `Registry`",
                _class_reference(registry.Registry),
                "### `Record`",
                "What a command reads and calls on a record it found (`martlet/records.py`):",
                _class_reference(records.Record, skip_summary=True),
            ]
        )
        + "\n"
    )


def _replace(text: str, name: str, body: str) -> str:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start not in text or end not in text:
        raise ValueError(f"markers {start} / {end} not found")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n\n{body}\n{end}{tail}"


#: marker name -> what renders the part between its markers
SECTIONS = {
    "records": render_records,
    "interfaces": render_interfaces,
    "registry": render_registry,
    "hooks": render_hooks,
}


def render(text: str) -> str:
    """``text`` (the guide) with its generated sections brought up to date."""
    for name, render_section in SECTIONS.items():
        text = _replace(text, name, render_section())
    return text


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0] if args else "docs/plugins.md")
    path.write_text(render(path.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"updated {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
