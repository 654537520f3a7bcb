"""A command's options composed from the records the user selects.

A command's config dataclass names the records it takes with selector options — an option
declared with ``names_of=KIND`` (``tuner: str = option("lora", names_of="tuners")``). A record
may declare its own options (:attr:`martlet.records.Record.options`: a dataclass of
:func:`martlet.config.option` fields). When a config is built (:func:`martlet.config.build`,
:func:`martlet.config.parse_flags`), the options of every installed record of a selector's kind
are understood, but only those of the selected record are accepted: the config is an instance
of :func:`composed` — the command's class with the selected records' option classes mixed in,
so ``config.lora_rank`` reads as before — and an option of a record that was not selected is an
error that names the record it belongs to and the selection that would take it
(:func:`not_selected`). ``martlet sft --tuner boft --help`` shows boft's options in a group of
their own (:func:`groups`).

Nothing here runs for a config class without selectors, and nothing imports a record's
implementation: only its options module (keep it light).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from typing import Any

from martlet.errors import ConfigError, MartletError


@dataclasses.dataclass(frozen=True)
class Selector:
    """An option of a command config that names a record of ``kind``."""

    field: str
    kind: str
    default: Any
    spec: Any = None  #: its :class:`martlet.config.OptionSpec` (``where`` filters records)

    @property
    def many(self) -> bool:
        """A list option (``--report-to tensorboard wandb``): every record it names."""
        return self.spec is not None and self.spec.is_list

    def qualifies(self, record: Any) -> bool:
        return self.spec is None or self.spec.qualifies(record)

    @property
    def flag(self) -> str:
        return "--" + self.field.replace("_", "-")


@dataclasses.dataclass(frozen=True)
class RecordOptions:
    """A record and the dataclass of its options."""

    kind: str
    record: Any
    cls: type

    @property
    def label(self) -> str:
        """``tuner lora``"""
        return f"{self.record.label} {self.record.name}"

    @property
    def where(self) -> str:
        """``tuner lora (martlet-peft)``"""
        dist = distribution_of(self.cls)
        return f"{self.label} ({dist})" if dist else self.label


def selectors(cls: type) -> list[Selector]:
    """The selector options of config class ``cls``: those declared with ``names_of``, a single
    name or a list of names (each named record's options join)."""
    from martlet.config import specs

    return [
        Selector(spec.name, spec.names_of, spec.default, spec)
        for spec in specs(cls).values()
        if spec.names_of
    ]


def selection_in(sel: Selector, values: Mapping[str, Any]) -> Any:
    """What selector ``sel`` names in ``values``: its own value, else the record an option
    given instead implies (``implied_by``), else its default."""
    from martlet.config import implied

    if values.get(sel.field) is not None:
        value = values[sel.field]
        if sel.many:  # a list selector also takes names joined by commas (--tasks a,b)
            items = [value] if isinstance(value, str) else list(value)
            return [n.strip() for item in items for n in str(item).split(",") if n.strip()]
        return value
    name = implied(sel.spec.implied_by, values) if sel.spec is not None else None
    return name if name is not None else values.get(sel.field, sel.default)


def _bases(cls: type) -> set[type]:
    return set(cls.__mro__)


def offered(cls: type) -> list[RecordOptions]:
    """For every selector of ``cls``, each installed record of its kind that declares options
    (other than a class ``cls`` already has). A record whose options cannot be imported is
    left out here; selecting it raises that error (:func:`selected`)."""
    found: list[RecordOptions] = []
    sels = selectors(cls)
    if not sels:
        return found
    from martlet.manager import get_manager

    registry = get_manager().registry
    own = _bases(cls)
    for sel in sels:
        for record in registry.records(sel.kind):
            if not sel.qualifies(record):
                continue
            try:
                options = record.options_class()
            except MartletError:
                continue
            if options is not None and options not in own:
                found.append(RecordOptions(sel.kind, record, options))
    return found


def selected(cls: type, values: Mapping[str, Any]) -> list[tuple[str, RecordOptions]]:
    """The records the selectors of ``cls`` name in ``values`` (their defaults when absent)
    that have options of their own, as ``(selector field, RecordOptions)`` pairs. A name no
    installed record has, or one the selector's ``where`` excludes, selects nothing (the
    command's own check says why)."""
    out: list[tuple[str, RecordOptions]] = []
    sels = selectors(cls)
    if not sels:
        return out
    from martlet.manager import get_manager

    registry = get_manager().registry
    own = _bases(cls)
    taken: set[type] = set()
    for sel in sels:
        value = selection_in(sel, values)
        names = value if isinstance(value, (list, tuple)) else [value]
        for name in names:
            if not isinstance(name, str) or not name:
                continue
            record = registry.find(sel.kind, name)
            if record is None or not sel.qualifies(record):
                continue
            options = record.options_class()
            if options is not None and options not in own and options not in taken:
                taken.add(options)
                out.append((sel.field, RecordOptions(sel.kind, record, options)))
    return out


@functools.cache
def composed(cls: type, chosen: tuple[tuple[str, type], ...]) -> type:
    """``cls`` with the option classes of ``chosen`` — ``(selector field, options class)``
    pairs — mixed in: a subclass of ``cls`` (its fields, then theirs; a field both declare
    keeps ``cls``'s declaration and one value). Each options class's own ``__post_init__``
    (and each of its bases', once) validates the instance after ``cls``'s. The class records
    its parts in ``composed_for`` (the pairs)."""
    if not chosen:
        return cls
    extras = tuple(extra for _, extra in chosen)
    own_post = getattr(cls, "__post_init__", None)
    # each options class's own check, and those of the bases it shares with others (once)
    checks, seen = [], set(cls.__mro__)
    for extra in extras:
        for klass in reversed(extra.__mro__):
            if klass not in seen:
                seen.add(klass)
                if (check := vars(klass).get("__post_init__")) is not None:
                    checks.append(check)

    def __post_init__(self: Any) -> None:
        if own_post is not None:
            own_post(self)
        for check in checks:
            check(self)

    made = dataclasses.make_dataclass(
        cls.__name__,
        [],
        bases=(cls, *extras),
        namespace={"__post_init__": __post_init__, "__doc__": cls.__doc__},
        kw_only=True,
    )
    made.__module__ = cls.__module__
    made.__qualname__ = cls.__qualname__
    made.composed_for = chosen
    return made


def composed_for(cls: type, values: Mapping[str, Any]) -> type:
    """``cls`` composed with the records its selectors name in ``values`` (:func:`selected`,
    :func:`composed`)."""
    return composed(cls, tuple((field, c.cls) for field, c in selected(cls, values)))


def _extras(cls: type) -> tuple[type, ...]:
    """The options classes composed into ``cls`` (none for a plain command class)."""
    return tuple(extra for _, extra in getattr(cls, "composed_for", ()))


def not_selected(
    label: str, owners: Sequence[RecordOptions], values: Mapping[str, Any], cls: type
) -> ConfigError:
    """The error for option ``label`` (``--boft-block-size``) that only unselected records
    (``owners``) declare."""
    sel = next(s for s in selectors(cls) if s.kind == owners[0].kind)  # cls: composed or not
    current = selection_in(sel, values)
    if isinstance(current, (list, tuple)):
        current = " ".join(map(str, current)) or "none"
    kinds = owners[0].record.label
    if len(owners) == 1:
        whose = owners[0].where
    else:
        dists = sorted({d for o in owners if (d := distribution_of(o.cls))})
        whose = f"{_plural(kinds)} {', '.join(o.record.name for o in owners)}"
        whose += f" ({', '.join(dists)})" if dists else ""
    if sel.many:
        named = f"names {current}" if current != "none" else "names none"
        what = f"{label} is an option of {whose}, which {sel.flag} does not name"
        why = f"{sel.flag} {named} (it would be ignored)"
    elif current in (None, ""):
        what = f"{label} is an option of {whose}, and {sel.flag} selects no {kinds}"
        why = f"without {sel.flag} nothing reads it (it would be ignored)"
    else:
        what = f"{label} is an option of {whose}, not of {kinds} {current!r}"
        why = f"{sel.flag} {current} selects {kinds} {current!r}, which does not read it " + (
            "(it would be ignored)"
        )
    return ConfigError(
        what,
        why=why,
        fix=f"pass {sel.flag} {owners[0].record.name}"
        + (" (with the others you want)" if sel.many else "")
        + (" (or another of those)" if len(owners) > 1 else "")
        + f", or leave {label} out",
    )


def _plural(label: str) -> str:
    return label + ("es" if label.endswith("s") else "s")


def option_values(config: Any, record: Any) -> dict[str, Any]:
    """The values ``config`` holds for ``record``'s own options (the fields of its options
    class, composed in when it was selected), by name; empty for a record without options."""
    options = record.options_class()
    if options is None:
        return {}
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(options) if f.init}


def chosen_options(config: Any, field: str) -> dict[str, Any]:
    """The values ``config`` holds for the options of the records its selector ``field``
    named (those composed into its class: a record whose options the command already has,
    like the built-in loaders' ``--torch-dtype``, adds nothing), by name. What a command
    passes on with the record it selected: ``load_model(..., loader=config.model_loader,
    **chosen_options(config, "model_loader"))``."""
    out: dict[str, Any] = {}
    for selector, options in getattr(type(config), "composed_for", ()):
        if selector == field:
            for f in dataclasses.fields(options):
                if f.init:
                    out[f.name] = getattr(config, f.name)
    return out


@functools.cache
def _distributions() -> dict[str, list[str]]:
    from importlib import metadata

    return metadata.packages_distributions()


def distribution_of(cls: type) -> str:
    """The installed distribution that ships ``cls``'s module ('' when unknown)."""
    top = cls.__module__.split(".")[0]
    names = _distributions().get(top) or []
    return names[0] if names else ""


def groups(cls: type) -> list[tuple[str, list[str]]]:
    """The options of config class ``cls`` (composed or not) by the class that declares them,
    as ``(title, field names)``: the command's own first, then each option class it
    inherits or composes, titled with its first docstring line and its distribution."""
    fields = [f.name for f in dataclasses.fields(cls) if f.init]
    extras = _extras(cls)
    owner: dict[str, type] = {}
    for name in fields:
        for klass in cls.__mro__:
            if name in vars(klass).get("__annotations__", {}):
                owner[name] = klass
                break
    order: list[type] = []
    for name in fields:
        if owner.get(name) not in order:
            order.append(owner.get(name))
    # the command's own class first, then its option classes in MRO order, composed record
    # options last
    mro = list(cls.__mro__)
    order.sort(key=lambda k: (k in extras, k is not _command_class(cls), mro.index(k) if k else 0))
    out = []
    for klass in order:
        names = [n for n in fields if owner.get(n) is klass]
        out.append((_title(klass), names))
    return out


def _command_class(cls: type) -> type:
    return cls.__mro__[1] if _extras(cls) else cls


def _title(klass: type | None) -> str:
    """The first sentence of ``klass``'s docstring and its distribution."""
    if klass is None:
        return "Options"
    doc = (klass.__doc__ or "").strip()
    if doc.startswith(klass.__name__ + "("):  # dataclasses' generated signature
        doc = ""
    paragraph = " ".join(doc.split("\n\n")[0].split())
    sentence = paragraph.split(". ")[0].rstrip(".:").replace("``", "`")
    dist = distribution_of(klass)
    title = sentence or klass.__name__
    return f"{title} ({dist})" if dist else title
