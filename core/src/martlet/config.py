"""Typed command configs from defaults, a YAML/JSON file and flags.

A command's options are one dataclass; each field is an option, declared with :func:`option`
for its help text and aliases::

    @dataclass
    class SftConfig:
        model: str = option(help="model id or path", aliases=("model_type",))
        lora_rank: int = option(8, help="LoRA rank")
        dataset: list[str] = option(default_factory=list, help="dataset specs")

Values are applied in order, the later winning: field defaults, then the config file
(``--config FILE``), then flags. Flags are accepted kebab-case and snake_case (``--lora-rank``,
``--lora_rank``) and under any alias; a file may group keys in sections (``model:``,
``training_args:``, ...) that flatten onto the same options. An unknown key or flag is a
:class:`~martlet.errors.ConfigError` that suggests the closest valid name.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

from martlet.errors import ConfigError

T = TypeVar("T")
_MISSING = dataclasses.MISSING
_TRUE = {"1", "true", "yes", "on", "y"}
_FALSE = {"0", "false", "no", "off", "n"}
_NONE = {"none", "null", "~"}


def option(
    default: Any = _MISSING,
    *,
    help: str = "",
    aliases: Sequence[str] = (),
    default_factory: Any = _MISSING,
    metavar: str | None = None,
    positional: bool = False,
    names_of: str | None = None,
    where: Mapping[str, Any] | None = None,
    implied_by: Mapping[str, str] | None = None,
) -> Any:
    """Declare a config option: a dataclass field with help text and aliases.

    Args:
        default: the default value; leave unset for a required option.
        help: one or two sentences shown by ``--help``.
        aliases: other names accepted for the flag and in files (e.g. ms-swift's names).
        default_factory: for mutable defaults (``list``, ``dict``).
        metavar: the value's placeholder in ``--help``.
        positional: also take this option's value from positional arguments.
        names_of: the option names a record of this kind (``"tuners"``): ``--help`` lists the
            names installed at the time, plugins' included, and the named record's own
            options join the command's (:mod:`martlet.compose`).
        where: with ``names_of``, only records whose fields have these values qualify
            (``{"inputs": "batch"}``; a tuple value allows any of its items).
        implied_by: with ``names_of``, ``{other option: record name}``: the selector left
            unset names that record when the other option is given (``{"quant_bits": "bnb"}``:
            ``--quantization-bit 4`` alone selects bnb), so its options are accepted too. The
            config class's ``__post_init__`` sets the value (:func:`apply_implied`).
    """
    metadata = {
        "help": help,
        "aliases": tuple(aliases),
        "metavar": metavar,
        "positional": positional,
        "names_of": names_of,
        "where": dict(where or {}),
        "implied_by": dict(implied_by or {}),
    }
    if default_factory is not _MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def require(
    ok: bool, flag: str, value: Any, rule: str, example: str, *, why: str | None = None
) -> None:
    """Raise ``ConfigError("--FLAG must be RULE, not VALUE", fix="e.g. --FLAG EXAMPLE")``
    unless ``ok``: the one shape of a value check that needs no model (``flag`` without its
    dashes, e.g. ``"learning-rate"``)."""
    if not ok:
        raise ConfigError(
            f"--{flag} must be {rule}, not {value!r}", why=why, fix=f"e.g. --{flag} {example}"
        )


def key(name: str) -> str:
    """Flags and keys compare case-insensitively with ``-`` and ``_`` alike."""
    return name.strip().lstrip("-").lower().replace("-", "_")


@dataclasses.dataclass(frozen=True)
class OptionSpec:
    """One option of a config class, as flags, files and ``--help`` see it."""

    name: str
    type: Any
    default: Any
    help: str
    aliases: tuple[str, ...]
    metavar: str | None
    positional: bool
    names_of: str | None = None
    where: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    implied_by: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def qualifies(self, record: Any) -> bool:
        """Whether ``record`` is one this selector may name (its ``where``)."""
        for name, allowed in self.where.items():
            value = getattr(record, name, None)
            if value not in (allowed if isinstance(allowed, tuple) else (allowed,)):
                return False
        return True

    @property
    def required(self) -> bool:
        return self.default is _MISSING

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def is_bool(self) -> bool:
        return _strip_optional(self.type) is bool

    @property
    def is_list(self) -> bool:
        return typing.get_origin(_strip_optional(self.type)) in (list, tuple, Sequence)

    def type_name(self) -> str:
        return _type_name(self.type)


def implied(implied_by: Mapping[str, str], values: Mapping[str, Any]) -> str | None:
    """The record name a selector declared with ``implied_by`` takes from another option
    given in ``values`` (a flag set to false counts as not given), or None."""
    for other, name in implied_by.items():
        if values.get(other) not in (None, False):
            return name
    return None


def apply_implied(config: Any) -> None:
    """Set each selector of ``config`` left unset to the record another option given implies
    (``option(..., implied_by=)``); for a config class's ``__post_init__``."""
    values = vars(config)
    for f in dataclasses.fields(config):
        implied_by = f.metadata.get("implied_by")
        if implied_by and not values.get(f.name):
            name = implied(implied_by, values)
            if name is not None:
                setattr(config, f.name, name)


def specs(cls: type) -> dict[str, OptionSpec]:
    """The options of config class ``cls``, by field name."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    out: dict[str, OptionSpec] = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        default: Any = f.default
        if f.default_factory is not _MISSING:
            default = f.default_factory()
        md = f.metadata
        out[f.name] = OptionSpec(
            name=f.name,
            type=hints.get(f.name, str),
            default=default,
            help=md.get("help", ""),
            aliases=tuple(md.get("aliases", ())),
            metavar=md.get("metavar"),
            positional=bool(md.get("positional", False)),
            names_of=md.get("names_of"),
            where=dict(md.get("where") or {}),
            implied_by=dict(md.get("implied_by") or {}),
        )
    return out


def _lookup(cls: type) -> dict[str, str]:
    table: dict[str, str] = {}
    for spec in specs(cls).values():
        for n in (spec.name, *spec.aliases):
            table[key(n)] = spec.name
    return table


def _extended(
    cls: type, chosen: Mapping[str, Any] | None = None
) -> tuple[dict[str, OptionSpec], dict[str, str], dict[str, list[Any]]]:
    """The options a config of ``cls`` understands: its own, and those of every installed
    record its selectors can choose (:mod:`martlet.compose`), as ``(specs, lookup table,
    owners)`` — ``owners`` maps a record option's name to the records that declare it. Where
    two records declare an option of one name, the spec of the record ``chosen`` (selector
    values) names wins (DPO's ``loss_type`` is a list, CPO's one choice)."""
    own = specs(cls)
    all_specs = dict(own)
    table = _lookup(cls)
    owners: dict[str, list[Any]] = {}
    if not any(s.names_of for s in own.values()):
        return all_specs, table, owners
    from martlet.compose import offered, selected

    for _, first in selected(cls, chosen or {}):
        for name, spec in specs(first.cls).items():
            all_specs.setdefault(name, spec)
    for offer in offered(cls):
        for name, spec in specs(offer.cls).items():
            if name in own:
                continue
            all_specs.setdefault(name, spec)
            owners.setdefault(name, []).append(offer)
            for n in (spec.name, *spec.aliases):
                table.setdefault(key(n), name)
    return all_specs, table, owners


def _suggest(name: str, table: Mapping[str, str], prefix: str = "") -> str | None:
    close = difflib.get_close_matches(key(name), list(table), n=1, cutoff=0.6)
    if not close:
        return None
    return f"did you mean {prefix}{close[0].replace('_', '-') if prefix else close[0]}?"


def _foreign(cls: type) -> dict[str, str]:
    return {key(k): v for k, v in getattr(cls, "foreign_options", {}).items()}


def _not_in_use(distribution: str) -> tuple[str, str, str] | None:
    """``(state, why, fix)`` when ``distribution``'s plugin is installed but not in use
    (disabled, not allowed, or failed to load); None otherwise."""
    from martlet.manager import OK, get_manager
    from martlet.records import normalize

    manager = get_manager()
    for info in manager.plugins:
        if normalize(info.distribution) == normalize(distribution) and (
            info.effective_status != OK
        ):
            return manager.unavailable(info)
    return None


def _elsewhere(cls: type, raw: str) -> bool:
    """Whether ``raw`` is an option known to live elsewhere (not a file section)."""
    from martlet.providers import known_option

    return key(raw) in _foreign(cls) or known_option(raw) is not None


def unknown_option(
    cls: type, raw: str, label: str, table: Mapping[str, str], prefix: str = ""
) -> ConfigError:
    """The error for an unknown option: a suggestion, or — for an option another command or
    a plugin provides (:data:`martlet.providers.OPTIONS`; a config class's deprecated
    ``foreign_options``, name -> where) — where it lives and what to install."""
    elsewhere = _foreign(cls).get(key(raw))
    if elsewhere:
        return ConfigError(
            f"{label} is not an option of this command",
            why=f"it belongs to {elsewhere}",
            fix="use that command or install that plugin, or drop the option",
        )
    from martlet.providers import installed, known_option

    known = known_option(raw)
    if known is not None:
        dist, where = known
        off = _not_in_use(dist)
        if off is not None:  # installed, but disabled or broken: say which, and how to fix
            state, why, fix = off
            return ConfigError(
                f"{label} is not available",
                why=f"it belongs to {where}, from {dist}, {state} ({why})",
                fix=fix,
            )
        if installed(dist):
            return ConfigError(
                f"{label} is not an option of this command",
                why=f"it belongs to {where}, from {dist} (installed)",
                fix="use that, or drop the option",
            )
        return ConfigError(
            f"{label} is not an option of this command",
            why=f"it belongs to {where}, from {dist}, which is not installed",
            fix=f"pip install {dist}, or drop the option",
        )
    return ConfigError(
        f"unknown {label}",
        why=_suggest(raw, table, prefix=prefix),
        fix="`--help` lists the options of this command",
    )


# ---------------------------------------------------------------------------- types


def _strip_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _allows_none(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType) and type(None) in typing.get_args(tp)


def _takes_mapping(tp: Any) -> bool:
    inner = _strip_optional(tp)
    return inner is Any or inner is dict or typing.get_origin(inner) in (dict, Mapping)


def _type_name(tp: Any) -> str:
    inner = _strip_optional(tp)
    origin = typing.get_origin(inner)
    if origin is Literal:
        return "|".join(str(a) for a in typing.get_args(inner))
    if origin in (list, tuple, Sequence):
        args = typing.get_args(inner)
        return f"{_type_name(args[0]) if args else 'text'} ..."
    if origin in (dict, Mapping) or inner is dict:
        return "JSON"
    return {bool: "bool", int: "int", float: "float", str: "text"}.get(inner, "value")


def coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert ``value`` (a flag's string or a file's value) to type ``tp``.

    Raises:
        ConfigError: the value does not fit; the message says where it came from.
    """
    if value is None or (isinstance(value, str) and value.strip().lower() in _NONE):
        if _allows_none(tp) or tp is Any:
            return None
        if value is None:
            raise ConfigError(f"{where} needs a value of type {_type_name(tp)}, got nothing")
    inner = _strip_optional(tp)
    origin = typing.get_origin(inner)
    try:
        if inner is Any:
            return value
        if origin is Literal:
            choices = typing.get_args(inner)
            for choice in choices:
                if str(choice).lower() == str(value).lower():
                    return choice
            raise ConfigError(
                f"{where} must be one of {', '.join(map(str, choices))}, got {value!r}",
                fix=_suggest(str(value), {str(c): str(c) for c in choices}) or None,
            )
        if inner is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError(value)
        if inner is int:
            if isinstance(value, bool):
                raise ValueError(value)
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value) if not isinstance(value, str) else int(value.strip().replace("_", ""))
        if inner is float:
            if isinstance(value, bool):
                raise ValueError(value)
            return float(value)
        if inner is str:
            if isinstance(value, (dict, list)):
                raise ValueError(value)
            return str(value)
        if origin in (list, tuple, Sequence):
            (item_tp, *_rest) = typing.get_args(inner) or (str,)
            if isinstance(value, str):
                items: list[Any] = [value]
            elif isinstance(value, (list, tuple)):
                items = list(value)
            else:
                items = [value]
            out = [coerce(v, item_tp, where) for v in items]
            return tuple(out) if origin is tuple else out
        if origin in (dict, Mapping) or inner is dict:
            if isinstance(value, str):
                try:
                    value = json.loads(value)
                except json.JSONDecodeError as exc:
                    raise ConfigError(
                        f"{where} expects a JSON object, got {value!r}",
                        why=str(exc),
                        fix='quote it for the shell, e.g. \'{"key": "value"}\'',
                    ) from None
            if not isinstance(value, Mapping):
                raise ValueError(value)
            return dict(value)
    except ConfigError:
        raise
    except (TypeError, ValueError):
        raise ConfigError(
            f"{where} expects {_type_name(tp)}, got {value!r}",
        ) from None
    return value


# ---------------------------------------------------------------------------- files


def read_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON config file into a mapping.

    Raises:
        ConfigError: the file is missing or does not parse; the message gives the line.
    """
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"config file {str(path)!r} not found", fix="check the path of --config")
    text = file.read_text(encoding="utf-8")
    if file.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"{file.name} is not valid JSON (line {exc.lineno}, column {exc.colno})",
                why=exc.msg,
            ) from None
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            problem = getattr(exc, "problem", None) or str(exc)
            raise ConfigError(f"{file.name} is not valid YAML{where}", why=problem) from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{file.name} must hold a mapping of options, not a {type(data).__name__}",
            fix="write one `option: value` per line",
        )
    return dict(data)


def flatten(cls: type, data: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Map a file's keys (sections flattened) onto the option names of ``cls``.

    A key that holds a mapping is a section, its keys options too, unless it names an option
    that takes a mapping (a ``dict`` option); so ``model:`` may be a section even where
    ``model`` is also an option.

    Raises:
        ConfigError: an unknown key (with a suggestion), or one option set twice to different
            values in different sections.
    """
    all_specs, table, _ = _extended(cls)
    out: dict[str, Any] = {}
    where: dict[str, str] = {}

    def visit(mapping: Mapping[str, Any], path: str, section: str | None = None) -> None:
        for raw, value in mapping.items():
            name = table.get(key(str(raw)))
            here = f"{path}.{raw}" if path else str(raw)
            if name is None and section is not None and key(str(raw)) == "name":
                name = section  # `tuner: {name: lora, ...}`: the section names the record
            if (
                name is not None
                and isinstance(value, Mapping)
                and not _takes_mapping(all_specs[name].type)
            ):
                # a section named like an option (`model:` holding `model: ...`); a selector's
                # section (`tuner:`) may name the record with `name:`
                # (an option of this command even where a plugin's is known by the same name:
                # `infer_backend:` as `martlet deploy --print-config` writes it)
                selects = name if all_specs[name].names_of else None
                visit(value, here, selects)
                continue
            if name is None:
                if isinstance(value, Mapping) and not _elsewhere(cls, str(raw)):
                    visit(value, here)
                    continue
                raise unknown_option(cls, str(raw), f"option {here!r} in {source}", table)
            if name in out and out[name] != value:
                raise ConfigError(
                    f"option {name!r} is set twice in {source}: {where[name]!r} and {here!r}",
                    fix="keep one of them",
                )
            out[name], where[name] = value, here

    visit(data, "")
    return out


# ---------------------------------------------------------------------------- flags


@dataclasses.dataclass
class ParsedArgs:
    """What :func:`parse_flags` found on a command line."""

    values: dict[str, Any]
    config_file: str | None = None
    print_config: bool = False


def _is_flag(token: str) -> bool:
    return token.startswith("--") and len(token) > 2


def parse_flags(cls: type, args: Sequence[str]) -> ParsedArgs:
    """Parse ``--name value`` flags for config class ``cls`` (values still as text).

    Booleans take an optional value (``--flag``, ``--flag false``, ``--no-flag``); list options
    take every value up to the next flag, and repeated flags add to the list. ``--config FILE``
    and ``--print-config`` are handled here too. Positional arguments fill the options declared
    ``positional`` in order.

    Raises:
        ConfigError: an unknown flag (with a suggestion), a missing value, or an extra argument.
    """
    all_specs, table, _ = _extended(cls, _preselected(cls, args))
    parsed = ParsedArgs(values={})
    positionals = [s for s in all_specs.values() if s.positional]
    i = 0
    tokens = list(args)
    while i < len(tokens):
        token = tokens[i]
        i += 1
        if token == "--":
            rest, tokens = tokens[i:], []
            for value in rest:
                _take_positional(parsed, positionals, value)
            break
        if not _is_flag(token):
            _take_positional(parsed, positionals, token)
            continue
        name, eq, inline = token[2:].partition("=")
        k = key(name)
        if k in ("config",):
            if not eq:
                if i >= len(tokens):
                    raise ConfigError("--config needs a file path")
                inline, i = tokens[i], i + 1
            parsed.config_file = inline
            continue
        if k == "print_config":
            parsed.print_config = True
            continue
        negated = False
        if k not in table and k.startswith("no_") and k[3:] in table:
            if all_specs[table[k[3:]]].is_bool:
                k, negated = k[3:], True
        if k not in table:
            raise unknown_option(cls, name, f"flag --{name}", table, prefix="--")
        spec = all_specs[table[k]]
        if negated:
            parsed.values[spec.name] = False
            continue
        if eq:
            values = [inline]
        elif spec.is_bool:
            nxt = tokens[i].lower() if i < len(tokens) else ""
            if nxt in _TRUE or nxt in _FALSE:
                values, i = [tokens[i]], i + 1
            else:
                values = ["true"]
        elif spec.is_list:
            values = []
            while i < len(tokens) and not _is_flag(tokens[i]):
                values.append(tokens[i])
                i += 1
            if not values:
                raise ConfigError(f"flag {spec.flag} needs at least one value")
        else:
            if i >= len(tokens) or (_is_flag(tokens[i]) and tokens[i] != "--"):
                raise ConfigError(f"flag {spec.flag} needs a value ({spec.type_name()})")
            values, i = [tokens[i]], i + 1
        if spec.is_list:
            parsed.values.setdefault(spec.name, []).extend(values)
        else:
            parsed.values[spec.name] = values[0]
    return parsed


def _preselected(cls: type, args: Sequence[str]) -> dict[str, str]:
    """The values the command line gives ``cls``'s selector options (``--tuner boft``), read
    before the rest is parsed, so the selected records' option types apply."""
    from martlet.compose import selectors as of

    table = _lookup(cls)
    selectors = {sel.field for sel in of(cls) if not sel.many}
    found: dict[str, str] = {}
    tokens = list(args)
    for i, token in enumerate(tokens):
        if token == "--":
            break
        if not _is_flag(token):
            continue
        name, eq, inline = token[2:].partition("=")
        field = table.get(key(name))
        if field in selectors:
            if eq:
                found[field] = inline
            elif i + 1 < len(tokens) and not _is_flag(tokens[i + 1]):
                found[field] = tokens[i + 1]
    return found


def _take_positional(parsed: ParsedArgs, positionals: list[OptionSpec], value: str) -> None:
    for spec in positionals:
        if spec.is_list:
            parsed.values.setdefault(spec.name, []).append(value)
            return
        if spec.name not in parsed.values:
            parsed.values[spec.name] = value
            return
    raise ConfigError(
        f"unexpected argument {value!r}",
        fix="options are given as --name value; `--help` lists them",
    )


# ---------------------------------------------------------------------------- resolve


def build(
    cls: type[T],
    *,
    file: str | Path | None = None,
    values: Mapping[str, Any] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> T:
    """Build a config of type ``cls``: defaults, then ``file``, then ``values``, then ``flags``.

    ``values`` are Python values (the Python API); ``flags`` are what :func:`parse_flags`
    returned. Keys of both may be option names or aliases in either case style.

    Raises:
        ConfigError: an unknown key, a value of the wrong type, or a required option missing.
    """
    all_specs, table, owners = _extended(cls)
    merged: dict[str, tuple[Any, str]] = {}
    if file is not None:
        for name, value in flatten(cls, read_file(file), Path(file).name).items():
            merged[name] = (value, f"option {name!r} in {Path(file).name}")
    for source, mapping in (("argument", values), ("flag", flags)):
        for raw, value in (mapping or {}).items():
            name = table.get(key(raw))
            if name is None:
                label = f"flag --{raw}" if source == "flag" else f"option {raw!r}"
                prefix = "--" if source == "flag" else ""
                raise unknown_option(cls, raw, label, table, prefix=prefix)
            label = all_specs[name].flag if source == "flag" else f"option {name!r}"
            merged[name] = (value, label)
    if owners:  # the selected records' options join the command's; others are an error
        from martlet.compose import composed_for, not_selected

        raw = {n: v for n, (v, _) in merged.items()}
        cls = composed_for(cls, raw)
        all_specs = specs(cls)
        for name, (_, where) in merged.items():
            if name not in all_specs:
                raise not_selected(where, owners[name], raw, cls)
    kwargs: dict[str, Any] = {}
    for name, (value, where) in merged.items():
        kwargs[name] = coerce(value, all_specs[name].type, where)
    missing = [s for s in all_specs.values() if s.required and s.name not in kwargs]
    if missing:
        flags_text = ", ".join(s.flag for s in missing)
        raise ConfigError(
            f"missing required option{'s' if len(missing) > 1 else ''} {flags_text}",
            fix="give it as a flag or in the --config file",
        )
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid {cls.__name__}", why=str(exc)) from exc


def to_dict(config: Any) -> dict[str, Any]:
    """The config as plain data (what ``config.yaml`` in a run directory holds).

    The options of a record the config's selectors chose (:mod:`martlet.compose`) are a
    section under the selector, which names the record: ``tuner: {name: lora, lora_rank:
    8, ...}`` (:func:`build` reads that form back, as it reads the flat one)."""
    out: dict[str, Any] = {}
    sections = _record_sections(type(config))
    fields = list(dataclasses.fields(config))
    if sections:  # the command's own options in their order, each record's section in place
        own = set(specs(type(config).__mro__[1]))
        fields.sort(key=lambda f: f.name not in own)
    for f in fields:
        value = getattr(config, f.name)
        if isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, Path):
            value = str(value)
        owner = sections.get(f.name)
        if owner is None:
            out[f.name] = value
        elif owner == f.name:  # the selector: its record's section, the name first
            out[f.name] = {"name": value, **out.get(f.name, {})}
        else:
            out.setdefault(owner, {})[f.name] = value
    return out


def _record_sections(cls: type) -> dict[str, str]:
    """For a composed config class: option name -> the selector whose record declares it
    (the selector itself maps to itself)."""
    chosen = getattr(cls, "composed_for", ())
    if not chosen:
        return {}
    own = specs(cls.__mro__[1])
    out: dict[str, str] = {}
    for selector, extra in chosen:
        if own[selector].is_list:
            continue  # the options of records a list names stay flat (`report_to: [a, b]`)
        out[selector] = selector
        for name in specs(extra):
            if name not in own:
                out[name] = selector
    return out


def selection(data: Mapping[str, Any], name: str, default: str | None = None) -> str | None:
    """The record a selector names in plain config data (a run's ``config.yaml``), written
    flat (``tuner: lora``) or as the record's section (``tuner: {name: lora, ...}``)."""
    value = data.get(name)
    if isinstance(value, Mapping):
        value = value.get("name")
    return str(value) if value not in (None, "") else default


def selected_options(data: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The selected record's own options in plain config data: its section's values other
    than ``name`` (``{}`` when the selection is written flat or has no options)."""
    value = data.get(name)
    if not isinstance(value, Mapping):
        return {}
    return {k: v for k, v in value.items() if k != "name"}


def to_yaml(config: Any) -> str:
    """The config as YAML text."""
    import yaml

    return yaml.safe_dump(to_dict(config), sort_keys=False, allow_unicode=True)
