"""Name resolution: every loaded plugin's records, by kind and name.

A command reaches other plugins' records through the module-level functions :func:`records`,
:func:`names`, :func:`find` and :func:`get`, which use the process-wide plugin manager's
:class:`Registry` (``martlet.get_manager().registry``). The registry is built the first time
it is used: every ``ok`` plugin's registration hooks are called once, and nothing they name is
imported. ``kind`` is a kind of :data:`martlet.records.KINDS`, plural or singular
(``"losses"``, ``"loss"``; ``-`` for ``_``); any other raises
:class:`~martlet.errors.UnknownNameError` listing the kinds. Names are matched
case-insensitively, with ``_`` and ``-`` alike, and aliases resolve to their record. A
record's :meth:`~martlet.records.Record.load` imports its implementation.

A command that lists the losses, or shows how the one named is called::

    import inspect

    import click
    from martlet import registry


    @click.command()
    @click.argument("name", required=False)
    def losses(name):
        \"\"\"List the losses, or show how the one called NAME is called.\"\"\"
        if name is None:
            for record in registry.records("losses"):
                click.echo(f"{record.name:8} {record.inputs:7} {record.summary}")
            return
        record = registry.get("losses", name)  # UnknownNameError: "did you mean ...?"
        loss = record.load()  # imported now; MissingDependencyError says what to install
        click.echo(f"{record.name} ({record.origin}): {record.impl}{inspect.signature(loss)}")

Keep no :class:`Registry` object between calls: registering a plugin
(:func:`martlet.register_plugin`) builds a new one; the module-level functions always use
the current one.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING

from martlet.errors import PluginError, UnknownNameError
from martlet.providers import PROVIDERS, provider
from martlet.records import Record, check_kind, normalize

if TYPE_CHECKING:
    from martlet.manager import PluginInfo, PluginManager


class Registry:
    """Every record of every loaded plugin, by kind.

    Built by the plugin manager (``get_manager().registry``) from the records of the plugins
    whose status is ``ok``; a failed, blocked or conflicting plugin contributes none. Every
    method taking ``kind`` raises :class:`~martlet.errors.UnknownNameError` for one that is
    no kind.
    """

    def __init__(self, records: dict[str, list[Record]], manager: PluginManager) -> None:
        self._manager = manager
        self._records = {k: sorted(v, key=lambda r: r.name.lower()) for k, v in records.items()}
        self._index: dict[str, dict[str, Record]] = {}
        for kind, recs in self._records.items():
            index = self._index[kind] = {}
            for rec in recs:
                for n in rec.names:
                    index[normalize(n)] = rec

    def records(self, kind: str) -> list[Record]:
        """The records of ``kind``, sorted by name (case-insensitively); a new list, empty when
        no loaded plugin registers one. Nothing is imported."""
        return list(self._records[check_kind(kind).kind])

    def names(self, kind: str) -> list[str]:
        """The names (not aliases) registered in ``kind``, in the order of :meth:`records`."""
        return [r.name for r in self.records(kind)]

    def find(self, kind: str, name: str) -> Record | None:
        """The record called ``name`` (or with that alias) in ``kind``, or None.

        The quiet lookup, for a name that may not be a record (a path, a hub id): it never
        says why a name is missing. ``martlet.resolve_model`` uses it.
        """
        return self._index[check_kind(kind).kind].get(normalize(name))

    def get(self, kind: str, name: str) -> Record:
        """The record called ``name`` (or with that alias) in ``kind``.

        The lookup for a name the user typed as a name (``--tuner NAME``): let its errors
        reach the user, they say what to do.

        Raises:
            UnknownNameError: no such name; the message lists close matches and, where known,
                the package that provides it.
            PluginError: the plugin that provides the name is installed but failed to load
                (the original error is attached) or conflicts with another plugin.
        """
        cls = check_kind(kind)
        found = self.find(cls.kind, name)
        if found is not None:
            return found
        raise self._unknown(cls, name)

    def _unknown(self, cls: type[Record], name: str) -> Exception:
        claims = self._manager.conflicts.get((cls.kind, normalize(name)))
        if claims:
            return PluginError(
                f"{cls.label} {name!r} is registered by more than one plugin: "
                + " and ".join(i.label for i in claims),
                why="Martlet never picks between two plugins by the order they load in",
                fix="keep one: uninstall the other, or block it with MARTLET_DISABLE_PLUGINS=NAME",
            )
        dist = provider(cls.kind, name)
        providers = self.unavailable_providers(cls.kind, name) if dist else []
        if providers:
            info = providers[0]
            state, why, fix = self._manager.unavailable(info)
            return PluginError(
                f"{cls.label} {name!r} is provided by {info.label}, which is {state}",
                why=why,
                fix=fix,
                cause=info.effective_exception,
            )
        known = sorted({n for rec in self._records[cls.kind] for n in rec.names})
        close = difflib.get_close_matches(
            normalize(name), [normalize(k) for k in known], n=3, cutoff=0.6
        )
        # best match first, as difflib ranks them; aliases of one record count once
        close_names = list(dict.fromkeys(self._index[cls.kind][c].name for c in close))
        why = f"did you mean {', '.join(repr(c) for c in close_names)}?" if close_names else None
        in_use = [
            info
            for info in getattr(self._manager, "plugins", [])
            if dist and info.distribution == dist and info.effective_status == "ok"
        ]
        if in_use:  # the package is here and loaded, but this version has no such record
            fix = (
                f"{dist} {in_use[0].version} is installed but has no {cls.label} {name!r}; "
                f"a newer version may: pip install -U {dist}"
            )
        elif dist:
            fix = f"it is provided by {dist}: pip install {dist}"
        elif known:
            fix = f"choose one of: {', '.join(self.names(cls.kind))}"
        else:
            fix = f"no {cls.label} is installed; `martlet plugins` lists what is"
        # nothing of this kind is in use, and a plugin that provides the kind is installed but
        # not in use (MARTLET_DISABLE_PLUGINS=peft and --tuner lora): that plugin is what is missing
        others = [] if dist or known else self.unavailable_providers(cls.kind)
        if others:
            why, fix = self.unavailable_hint(cls.kind, others)
        return UnknownNameError(f"unknown {cls.label} {name!r}", why=why, fix=fix)

    def unavailable_providers(self, kind: str, name: str | None = None) -> list[PluginInfo]:
        """Installed plugins that are not in use (disabled by ``MARTLET_DISABLE_PLUGINS``,
        left out of ``MARTLET_PLUGINS``, or failed) and are known to provide ``name`` in
        ``kind`` — or, without ``name``, any name of ``kind`` — by :mod:`martlet.providers`.

        Returns the manager's :class:`~martlet.manager.PluginInfo` of each, an empty list when
        none; for an error of your own when no record of a kind can do what was asked (pass
        them to :meth:`unavailable_hint`).
        """
        if name is not None:
            dists = [provider(kind, name)]
        else:
            dists = sorted(set(PROVIDERS.get(check_kind(kind).kind, {}).values()))
        out = []
        for dist in dists:
            info = self._manager.plugin(dist) if dist else None
            if info is not None and info.effective_status != "ok" and info not in out:
                out.append(info)
        return out

    def unavailable_hint(self, kind: str, infos: list[PluginInfo]) -> tuple[str, str]:
        """``(why, fix)`` saying that ``infos`` (from :meth:`unavailable_providers`), which
        provide ``kind``, are installed but not in use, and how to enable them: the ``why``
        and ``fix`` of a :class:`~martlet.errors.MartletError`."""
        plural = _plural(check_kind(kind).label)
        parts, fixes = [], []
        for info in infos:
            state, why, fix = self._manager.unavailable(info)
            failed = f" ({why})" if info.effective_status != "blocked" else ""
            parts.append(f"{info.label}, which provides {plural}, is {state}{failed}")
            fixes.append(fix)
        return "; ".join(parts), "; ".join(dict.fromkeys(fixes))


def _plural(label: str) -> str:
    if label.endswith("y"):
        return label[:-1] + "ies"
    if label.endswith(("s", "x")):
        return label + "es"
    return label + "s"


def _registry() -> Registry:
    from martlet.manager import get_manager

    return get_manager().registry


def get(kind: str, name: str) -> Record:
    """:meth:`Registry.get` on the process-wide manager's registry."""
    return _registry().get(kind, name)


def find(kind: str, name: str) -> Record | None:
    """:meth:`Registry.find` on the process-wide manager's registry."""
    return _registry().find(kind, name)


def records(kind: str) -> list[Record]:
    """:meth:`Registry.records` on the process-wide manager's registry."""
    return _registry().records(kind)


def names(kind: str) -> list[str]:
    """:meth:`Registry.names` on the process-wide manager's registry."""
    return _registry().names(kind)
