"""Plugin discovery and loading.

The rules (``docs/plugins.md`` explains them for plugin authors):

* Plugins are found through the entry-point group ``martlet``; the entry point's name is the
  plugin's name and its value the module holding the hook implementations. The core's own
  commands come from a built-in plugin registered the same way, minus discovery.
* ``MARTLET_PLUGINS`` (an allow-list; empty means none) and ``MARTLET_DISABLE_PLUGINS`` (a
  deny-list) name plugins or distributions and are applied *before* anything is imported:
  such a plugin shows as ``blocked``.
* A plugin that fails — it raises on import, is built for another :data:`PLUGIN_API`, or a
  registration hook raises or yields bad records — is skipped with a one-line warning naming
  its distribution and version, and shows as ``failed`` in ``martlet plugins``. It is a hard
  error instead when the user asked for it by name (``MARTLET_PLUGINS``, ``--plugin``,
  :func:`martlet.register_plugin`) or set ``MARTLET_STRICT_PLUGINS=1``.
* A plugin is either wholly in use or not at all: a failed plugin contributes no records.
* Two plugins registering one name (or alias) in one kind conflict. The plugin of the lower
  tier loses (built-in, then installed, then local); in one tier, both lose, and resolving the
  name says which distributions to choose between. Order of registration never picks a winner.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import pluggy

from martlet import hookspecs
from martlet.errors import MartletError, PluginError
from martlet.records import KINDS, Record, hook_name, normalize

#: The plugin API this core implements. A plugin declares the one it was built for as a
#: module-level ``MARTLET_API = <int>`` in its entry module.
PLUGIN_API = 1

ENTRY_POINT_GROUP = "martlet"
BUILTIN_MODULE = "martlet.builtin"

OK, FAILED, BLOCKED = "ok", "failed", "blocked"
ALLOW, DISABLE = "MARTLET_PLUGINS", "MARTLET_DISABLE_PLUGINS"
_TIERS = {"builtin": 0, "entry-point": 1, "local": 2}


class PluginWarning(UserWarning):
    """A plugin was skipped; the message names it and says why."""


@dataclass(eq=False)
class PluginInfo:
    """What ``martlet plugins`` shows about one plugin."""

    name: str
    distribution: str
    version: str
    module: str
    source: str  # "builtin", "entry-point" or "local"
    status: str = OK
    error: str = ""
    requested: bool = False
    records: dict[str, list[str]] = field(default_factory=dict)
    exception: BaseException | None = field(default=None, repr=False)
    obj: Any = field(default=None, repr=False)
    # a failure found while collecting records; cleared when the registry is rebuilt
    record_error: str = ""
    record_exception: BaseException | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        """``plugin 'name' (distribution version)``, as warnings and errors name it."""
        if self.source == "local":
            return f"local plugin {self.name!r} ({self.module})"
        return f"plugin {self.name!r} ({self.distribution} {self.version})"

    @property
    def effective_status(self) -> str:
        return FAILED if self.status == OK and self.record_error else self.status

    @property
    def effective_error(self) -> str:
        return self.error or self.record_error

    @property
    def effective_exception(self) -> BaseException | None:
        return self.exception or self.record_exception

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "module": self.module,
            "source": self.source,
            "status": self.effective_status,
            "error": self.effective_error or None,
            "records": {k: sorted(v) for k, v in self.records.items() if v},
        }


def _env_list(environ: dict[str, str], key: str) -> set[str] | None:
    if key not in environ:
        return None
    return {normalize(x) for x in environ[key].replace(";", ",").split(",") if x.strip()}


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


class PluginManager:
    """Finds, loads and checks plugins, and builds the :class:`~martlet.registry.Registry`.

    Args:
        environ: where ``MARTLET_PLUGINS``, ``MARTLET_DISABLE_PLUGINS`` and
            ``MARTLET_STRICT_PLUGINS`` are read (default: ``os.environ``).
        discover: look up installed plugins through entry points.
        builtins: register the core's own commands.
    """

    def __init__(
        self,
        *,
        environ: dict[str, str] | None = None,
        discover: bool = True,
        builtins: bool = True,
    ) -> None:
        env = dict(os.environ if environ is None else environ)
        self._env = {k: env[k] for k in (ALLOW, DISABLE) if k in env}
        self.allow = _env_list(env, "MARTLET_PLUGINS")
        self.deny = _env_list(env, "MARTLET_DISABLE_PLUGINS") or set()
        self.strict = _truthy(env.get("MARTLET_STRICT_PLUGINS"))
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self._plugins: dict[str, PluginInfo] = {}
        self._registry = None
        #: (kind, normalized name) -> the plugins that registered it, for names in conflict
        self.conflicts: dict[tuple[str, str], list[PluginInfo]] = {}
        self._warned: set[str] = set()
        if builtins:
            self._register_builtin()
        if discover:
            self._discover()
        self._raise_if_strict()

    # ------------------------------------------------------------------ loading

    @property
    def hook(self) -> Any:
        """pluggy's hook relay, for calling lifecycle hooks."""
        return self.pm.hook

    @property
    def plugins(self) -> list[PluginInfo]:
        """Every plugin seen, loaded or not, in discovery order (the registry is built first)."""
        _ = self.registry
        return list(self._plugins.values())

    def plugin(self, name: str) -> PluginInfo | None:
        """The plugin called ``name`` (or shipped by the distribution ``name``), if seen."""
        key = normalize(name)
        for info in self._plugins.values():
            if normalize(info.name) == key or normalize(info.distribution) == key:
                return info
        return None

    def _register_builtin(self) -> None:
        from martlet import __version__

        module = importlib.import_module(BUILTIN_MODULE)
        info = PluginInfo(
            "core", "martlet-core", __version__, BUILTIN_MODULE, "builtin", obj=module
        )
        self._add(info)

    def _discover(self) -> None:
        seen: set[tuple[str, str]] = set()
        # sorted, so listings and conflict messages do not depend on sys.path order
        eps = sorted(
            metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: (e.name, e.value)
        )
        for ep in eps:
            if (ep.name, ep.value) in seen:
                continue  # one distribution found twice on sys.path
            seen.add((ep.name, ep.value))
            dist = getattr(ep, "dist", None)
            dist_name = dist.metadata["Name"] if dist is not None else "?"
            version = dist.version if dist is not None else "?"
            info = PluginInfo(ep.name, dist_name, version, ep.value, "entry-point")
            keys = {normalize(ep.name), normalize(dist_name)}
            if self.allow is not None:
                info.requested = bool(keys & self.allow)
                if not info.requested:
                    info.status, info.error = BLOCKED, "not listed in MARTLET_PLUGINS"
            if keys & self.deny:
                info.status, info.error = BLOCKED, "listed in MARTLET_DISABLE_PLUGINS"
            if info.name in self._plugins:
                other = self._plugins[info.name]
                info.status = FAILED
                info.error = f"plugin name {info.name!r} is already used by {other.label}"
                self._plugins[f"{info.name}@{dist_name}"] = info
                self._warn(info)
                continue
            if info.status == BLOCKED:
                self._plugins[info.name] = info
                continue
            try:
                info.obj = ep.load()
            except Exception as exc:  # noqa: BLE001 - isolation is the point
                self._fail(info, f"import failed: {type(exc).__name__}: {exc}", exc)
                self._plugins[info.name] = info
                continue
            self._add(info)
        if self.allow:
            known = {normalize(i.name) for i in self._plugins.values()}
            known |= {normalize(i.distribution) for i in self._plugins.values()}
            for name in sorted(self.allow - known):
                warnings.warn(
                    f"MARTLET_PLUGINS names {name!r}, which is no installed plugin; "
                    "`martlet plugins` lists the installed ones",
                    PluginWarning,
                    stacklevel=3,
                )

    def _add(self, info: PluginInfo) -> None:
        """Check the API version and the hooks of a loaded plugin, then register it."""
        self._plugins[info.name] = info
        self._registry = None
        api = getattr(info.obj, "MARTLET_API", None)
        if api is None and info.source == "entry-point":
            self._fail(
                info,
                f"declares no MARTLET_API; add `MARTLET_API = {PLUGIN_API}` to {info.module}",
            )
            return
        if api is not None and api != PLUGIN_API:
            self._fail(
                info,
                f"built for plugin API {api!r}, but this martlet-core speaks API {PLUGIN_API}; "
                f"upgrade or downgrade {info.distribution} to a release for API {PLUGIN_API}",
            )
            return
        try:
            self.pm.register(info.obj, name=info.name)
            self.pm.check_pending()
        except Exception as exc:  # noqa: BLE001 - pluggy's validation errors
            self._unregister(info)
            self._fail(info, f"invalid hook implementation: {exc}", exc)

    def _unregister(self, info: PluginInfo) -> None:
        """Drop what is registered under ``info.name``, if it is ``info.obj``.

        Never by object: the same object may be in use as another plugin (pluggy refuses to
        register one object under two names, and unregistering it would drop that plugin).
        """
        if self.pm.get_plugin(info.name) is info.obj:
            self.pm.unregister(name=info.name)

    def _fail(self, info: PluginInfo, error: str, exc: BaseException | None = None) -> None:
        info.status, info.error, info.exception = FAILED, error, exc
        self._warn(info)

    def _warn(self, info: PluginInfo) -> None:
        message = f"{info.label} skipped: {info.effective_error}"
        if self.strict or info.requested or message in self._warned:
            return  # the registry is rebuilt after each local plugin: warn once per failure
        self._warned.add(message)
        warnings.warn(message, PluginWarning, stacklevel=3)

    def _raise_if_strict(self) -> None:
        if not self.strict:
            return
        for info in self._plugins.values():
            if info.effective_status == FAILED:
                raise _load_error(
                    info, "MARTLET_STRICT_PLUGINS=1 makes every plugin failure an error"
                )

    # ------------------------------------------------------------ local plugins

    def register(self, obj: Any, name: str | None = None) -> PluginInfo:
        """Register hook implementations from a module, class or object for this process.

        Shown as ``local`` in ``martlet plugins``; validated and conflict-checked like an
        installed plugin.

        Raises:
            PluginError: the object's hooks or records are invalid, or conflict with another
                plugin's; it is left unregistered.
        """
        name = name or getattr(obj, "__name__", None) or type(obj).__name__
        if name in self._plugins:
            raise PluginError(
                f"cannot register local plugin {name!r}",
                why=f"the name is already used by {self._plugins[name].label}",
                fix="pass another name",
            )
        module = getattr(obj, "__file__", None) or getattr(obj, "__name__", None) or name
        info = PluginInfo(name, "local", "-", str(module), "local", requested=True, obj=obj)
        self._add(info)
        _ = self.registry  # collect records now, so conflicts surface here
        if info.effective_status != OK:
            self._plugins.pop(name)
            self._unregister(info)
            self._registry = None
            raise _load_error(info)
        return info

    def load_file(self, path: str | os.PathLike[str]) -> PluginInfo:
        """Import a plain Python file and register its hook implementations (``--plugin``).

        Raises:
            PluginError: the file is missing, raises on import, or its plugin is invalid.
        """
        file = Path(path).expanduser().resolve()
        if not file.is_file():
            raise PluginError(
                f"plugin file {str(path)!r} not found",
                fix="pass the path of a .py file that holds hook implementations",
            )
        name = f"local:{file.stem}"
        # importable under this name while in use, so the file's records can name its own
        # objects (impl=f"{__name__}:MyLoss") and its dataclasses resolve their annotations
        module_name = "martlet_local_" + re.sub(r"\W", "_", file.stem)
        spec = importlib.util.spec_from_file_location(module_name, file)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        previous = sys.modules.get(module_name)
        sys.modules[module_name] = module
        try:
            try:
                spec.loader.exec_module(module)
            except Exception as exc:  # noqa: BLE001
                raise PluginError(
                    f"local plugin {str(file)!r} failed to import",
                    why=f"{type(exc).__name__}: {exc}",
                    fix="run `python FILE` to see the error, then fix the file",
                    cause=exc,
                ) from exc
            return self.register(module, name=name)
        except BaseException:
            if previous is None:
                sys.modules.pop(module_name, None)
            else:
                sys.modules[module_name] = previous
            raise

    def unavailable(self, info: PluginInfo) -> tuple[str, str, str]:
        """Why an installed plugin is not in use, and how to put it in use:
        ``(state, why, fix)``.

        ``state`` completes "plugin X, which is ..." (``installed but disabled by
        MARTLET_DISABLE_PLUGINS``); ``why`` gives the setting or the load error; ``fix`` is the
        change to the environment (or the reinstall) that enables it.
        """
        if info.effective_status != BLOCKED:
            return (
                "installed but failed to load",
                info.effective_error,
                f"reinstall it (pip install --force-reinstall {info.distribution}); "
                "`martlet plugins` shows the error",
            )
        keys = {normalize(info.name), normalize(info.distribution)}
        states, whys, fixes = [], [], []
        if keys & self.deny:
            states.append("disabled by MARTLET_DISABLE_PLUGINS")
            whys.append(f"MARTLET_DISABLE_PLUGINS={self._env.get(DISABLE)} is set")
            rest = sorted(self.deny - keys)
            fixes.append(
                f"set MARTLET_DISABLE_PLUGINS={','.join(rest)} (without {info.name})"
                if rest
                else "unset MARTLET_DISABLE_PLUGINS"
            )
        if self.allow is not None and not keys & self.allow:
            states.append("not listed in MARTLET_PLUGINS")
            whys.append(f"MARTLET_PLUGINS={self._env.get(ALLOW)} is set")
            fixes.append(
                f"set MARTLET_PLUGINS={','.join(sorted(self.allow | {normalize(info.name)}))}, "
                "or unset MARTLET_PLUGINS"
            )
        state = " and ".join(states) or info.effective_error or "blocked"
        why = " and ".join(whys) or info.effective_error
        fix = " and ".join(fixes) or "`martlet plugins` shows why"
        return f"installed but {state}", why, f"enable it: {fix}"

    def check_requested(self) -> None:
        """Raise for the first plugin the user asked for by name that failed."""
        for info in self.plugins:
            if info.requested and info.effective_status == FAILED:
                raise _load_error(info, "it is named in MARTLET_PLUGINS")

    # ---------------------------------------------------------------- records

    @property
    def registry(self):
        """The :class:`~martlet.registry.Registry` of every ``ok`` plugin's records."""
        if self._registry is None:
            from martlet.registry import Registry

            registry = Registry(self._collect_all(), self)
            self._raise_if_strict()  # before caching: in strict mode every use raises
            self._registry = registry
        return self._registry

    def _collect_all(self) -> dict[str, list[Record]]:
        loaded = [i for i in self._plugins.values() if i.status == OK]
        per_plugin: dict[str, list[Record]] = {}
        for info in loaded:
            info.record_error, info.record_exception = "", None
            info.records = {}
            try:
                per_plugin[info.name] = list(self._collect(info))
            except Exception as exc:  # noqa: BLE001
                info.record_error, info.record_exception = str(exc), exc
                self._warn(info)
        self._resolve_conflicts(per_plugin)
        records: dict[str, list[Record]] = {kind: [] for kind in KINDS}
        for info in loaded:
            if info.effective_status != OK:
                info.records = {}
                continue
            for rec in per_plugin.get(info.name, ()):
                records[rec.kind].append(rec)
                info.records.setdefault(rec.kind, []).append(rec.name)
        return records

    def _collect(self, info: PluginInfo) -> Iterator[Record]:
        for kind, cls in KINDS.items():
            caller = getattr(self.pm.hook, hook_name(kind))
            for impl in caller.get_hookimpls():
                if impl.plugin_name != info.name:
                    continue
                try:
                    result = impl.function()
                    items = list(result) if result is not None else []
                except MartletError as exc:
                    raise PluginError(f"{hook_name(kind)}() raised: {exc.what}", cause=exc) from exc
                except Exception as exc:  # noqa: BLE001
                    raise PluginError(
                        f"{hook_name(kind)}() raised {type(exc).__name__}: {exc}", cause=exc
                    ) from exc
                for item in items:
                    if not isinstance(item, cls):
                        raise PluginError(
                            f"{hook_name(kind)}() yielded {type(item).__name__}, not {cls.__name__}"
                        )
                    yield _with_origin(item, info)

    def _resolve_conflicts(self, per_plugin: dict[str, list[Record]]) -> None:
        self.conflicts = {}
        owners: dict[tuple[str, str], list[tuple[PluginInfo, Record]]] = {}
        for plugin_name, recs in per_plugin.items():
            info = self._plugins[plugin_name]
            if info.record_error:
                continue
            for rec in recs:
                for n in {normalize(x) for x in rec.names}:
                    owners.setdefault((rec.kind, n), []).append((info, rec))
        for (kind, n), claims in owners.items():
            involved = list({id(i): i for i, _ in claims}.values())
            if len(involved) == 1:
                if len(claims) > 1 and not involved[0].record_error:
                    involved[0].record_error = f"registers {KINDS[kind].label} {n!r} twice"
                    self._warn(involved[0])
                continue
            self.conflicts[(kind, n)] = involved
            best = min(_TIERS[i.source] for i in involved)
            winners = [i for i in involved if _TIERS[i.source] == best]
            losers = [i for i in involved if i not in winners or len(winners) > 1]
            for info in losers:
                if info.record_error:
                    continue
                others = " and ".join(sorted(o.label for o in involved if o is not info))
                info.record_error = (
                    f"registers {KINDS[kind].label} {n!r}, which {others} also registers; "
                    "uninstall one of them or block one with MARTLET_DISABLE_PLUGINS"
                )
                self._warn(info)

    # -------------------------------------------------------------- lifecycle

    def configure(self, config: Any) -> None:
        """Call ``martlet_configure(config)`` on every plugin."""
        self.pm.hook.martlet_configure(config=config)

    def model_loaded(self, model: Any, config: Any) -> None:
        """Call ``martlet_model_loaded(model, config)`` on every plugin."""
        self.pm.hook.martlet_model_loaded(model=model, config=config)


def _with_origin(record: Record, info: PluginInfo) -> Record:
    import dataclasses

    origin = info.distribution if info.source != "local" else f"local:{info.module}"
    return dataclasses.replace(record, origin=origin)


def _load_error(info: PluginInfo, context: str | None = None) -> PluginError:
    exc = info.effective_exception
    why = info.effective_error
    if context:
        why = f"{why} ({context})"
    return PluginError(
        f"{info.label} failed to load",
        why=why,
        fix=(
            "fix the plugin file"
            if info.source == "local"
            else "fix or reinstall it, or remove it from MARTLET_PLUGINS"
            if info.requested
            else f"fix or reinstall it, or block it with MARTLET_DISABLE_PLUGINS={info.name}"
        ),
        cause=exc,
    )


# ------------------------------------------------------------ process-wide manager

_manager: PluginManager | None = None


def get_manager() -> PluginManager:
    """The process-wide manager, created on first use from the installed plugins."""
    global _manager
    if _manager is None:
        _manager = PluginManager()
    return _manager


def set_manager(manager: PluginManager | None) -> PluginManager | None:
    """Replace the process-wide manager (tests use this); returns the previous one."""
    global _manager
    previous, _manager = _manager, manager
    return previous


def register_plugin(obj: Any, name: str | None = None) -> PluginInfo:
    """Register hook implementations from ``obj`` on the process-wide manager."""
    return get_manager().register(obj, name=name)


__all__ = [
    "PLUGIN_API",
    "PluginInfo",
    "PluginManager",
    "PluginWarning",
    "get_manager",
    "register_plugin",
    "set_manager",
]
