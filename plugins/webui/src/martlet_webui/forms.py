"""Form fields from option declarations, and flags from form values.

A command's options and a record's own options are dataclasses of
:func:`martlet.config.option` fields (:func:`martlet.config.specs` reads them). Each option
becomes a :class:`Field` — which widget shows it, its label, help text and default — so the UI
draws a tuner, loss or task a plugin installs with no change of its own. A value the user
typed goes back through :func:`martlet.config.coerce`, the function the command line uses, so
the form refuses what the command would refuse, with the same message, and
:func:`flag_tokens` writes it as the flag the command reads.

Nothing here imports gradio: the app turns :class:`Field` objects into components.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import typing
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from martlet.config import OptionSpec, coerce, specs
from martlet.errors import ConfigError

#: the widget kinds a field may have
CHECKBOX, DROPDOWN, NUMBER, TEXTBOX = "checkbox", "dropdown", "number", "textbox"
#: the dropdown entry of an optional choice left unset (the command's default)
UNSET = ""


def _inner(tp: Any) -> Any:
    """``tp`` without ``None`` (``int | None`` -> ``int``)."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if type(None) in typing.get_args(tp) and len(args) == 1:
        return args[0]
    return tp


def _optional(tp: Any) -> bool:
    return type(None) in typing.get_args(tp)


@dataclasses.dataclass(frozen=True)
class Field:
    """How one option shows in a form.

    Attributes:
        spec: the option (name, type, default, help) as the command line sees it.
        widget: ``checkbox`` (bool), ``dropdown`` (a choice, or an optional bool), ``number``
            (int, float) or ``textbox`` (anything else: text, lists as shell words, JSON).
        value: what the widget shows first: the option's default, as the widget holds it.
        choices: a dropdown's entries (``""`` first for an optional one: the default).
        integer: a number field that takes whole numbers only.
    """

    spec: OptionSpec
    widget: str
    value: Any
    choices: tuple[str, ...] = ()
    integer: bool = False

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def label(self) -> str:
        """The flag, as the user would type it (``--lora-rank``)."""
        return self.spec.flag

    @property
    def info(self) -> str:
        """The option's help text, and what an empty field means where it may be empty."""
        text = self.spec.help
        if self.widget == DROPDOWN and self.choices[:1] == (UNSET,):
            text += " (empty: the command's default)"
        elif self.widget == TEXTBOX and self.spec.is_list:
            text += " (several: separated by spaces)"
        return text.strip()


def field_for(spec: OptionSpec) -> Field:
    """The :class:`Field` of one option: bool -> checkbox, Literal -> dropdown, int/float ->
    number, anything else -> textbox."""
    inner = _inner(spec.type)
    default = None if spec.required else spec.default
    if inner is bool:
        if _optional(spec.type) and default is None:  # three states: unset, true, false
            return Field(spec, DROPDOWN, UNSET, (UNSET, "true", "false"))
        return Field(spec, CHECKBOX, bool(default))
    if typing.get_origin(inner) is Literal:
        choices = tuple(str(c) for c in typing.get_args(inner))
        if _optional(spec.type) or default is None:
            choices = (UNSET, *choices)
        return Field(spec, DROPDOWN, UNSET if default is None else str(default), choices)
    if inner in (int, float) and default is not None:
        return Field(spec, NUMBER, default, integer=inner is int)
    # an optional number left unset is an empty text field (a number field cannot be empty)
    return Field(spec, TEXTBOX, _as_text(spec, default))


def _as_text(spec: OptionSpec, value: Any) -> str:
    """A value as a text field shows it: lists as shell words, mappings as JSON."""
    if value is None:
        return ""
    if spec.is_list:
        return shlex.join(str(v) for v in value)
    if isinstance(value, Mapping):
        return json.dumps(dict(value))
    return str(value)


def fields_of(
    cls: type, names: Iterable[str] | None = None, exclude: Iterable[str] = ()
) -> list[Field]:
    """The fields of config class (or options class) ``cls``: those in ``names`` in that
    order (the ones ``cls`` has), else every option but those in ``exclude``."""
    all_specs = specs(cls)
    skip = set(exclude)
    if names is not None:
        return [field_for(all_specs[n]) for n in names if n in all_specs and n not in skip]
    return [field_for(s) for n, s in all_specs.items() if n not in skip]


def record_fields(record: Any, exclude: Iterable[str] = ()) -> list[Field]:
    """The fields of ``record``'s own options (``options=`` in its record), less the options
    in ``exclude`` (the command's own, which its form shows already); empty for a record
    without options. Only the options module is imported, as for ``--help``."""
    cls = record.options_class()
    if cls is None:
        return []
    return fields_of(cls, exclude=exclude)


def value_of(field: Field, raw: Any) -> Any:
    """The option's value for what the widget holds (``raw``), as the command would read it.

    Raises:
        ConfigError: the value does not fit the option (the command line's message, naming
            the flag).
    """
    spec = field.spec
    where = spec.flag
    if field.widget == CHECKBOX:
        return bool(raw)
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None if not spec.is_list else []
    if field.widget == NUMBER:
        return coerce(raw, spec.type, where)
    if spec.is_list:
        try:
            words = shlex.split(str(raw))
        except ValueError as exc:
            raise ConfigError(f"{where}: {raw!r} is not a list of words", why=str(exc)) from None
        return coerce(words, spec.type, where)
    return coerce(raw, spec.type, where)


def _same(value: Any, default: Any) -> bool:
    """Whether a form value is the option's default (``16 == 16.0``; ``True`` is no ``1``)."""
    if isinstance(value, (list, tuple)) and isinstance(default, (list, tuple)):
        return list(value) == list(default)
    if isinstance(value, bool) or isinstance(default, bool):
        return value is default
    if isinstance(value, (int, float)) and isinstance(default, (int, float)):
        return float(value) == float(default)
    return value == default


def flag_tokens(spec: OptionSpec, value: Any) -> list[str]:
    """``value`` as command-line tokens for ``spec`` (``["--lora-rank", "16"]``); ``[]`` for
    a value the command line cannot write (None, an empty list: the default applies)."""
    if value is None:
        return []
    if spec.is_bool:
        return [spec.flag] if value else [spec.flag, "false"]
    if spec.is_list:
        words = [_word(v) for v in value]
        return [spec.flag, *words] if words else []
    return [spec.flag, _word(value)]


def _word(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return json.dumps(dict(value))
    return str(value)


def changed_flags(fields: Sequence[Field], raw: Mapping[str, Any]) -> list[str]:
    """The flags for the values in ``raw`` (option name -> widget value) that differ from
    their option's default, in the order of ``fields``; an unchanged value is left to the
    command's default, as a user typing the command would.

    Raises:
        ConfigError: a value does not fit its option.
    """
    out: list[str] = []
    for field in fields:
        if field.name not in raw:
            continue
        value = value_of(field, raw[field.name])
        default = None if field.spec.required else field.spec.default
        if value is None or _same(value, default):
            continue
        out += flag_tokens(field.spec, value)
    return out
