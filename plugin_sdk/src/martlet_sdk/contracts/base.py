"""The record-and-registration contract every plugin's records pass, whatever their kind.

Subclass the contract of your record's kind and supply two fixtures::

    from martlet_sdk.contracts import TunerContract

    class TestMyTuner(TunerContract):
        @pytest.fixture
        def plugin(self):
            return "my-plugin"      # an installed plugin's name, or a module with hooks

        @pytest.fixture
        def record_name(self):
            return "my-tuner"

Checks that need something the record does not claim are skipped with the reason, never
silently passed (see :func:`requires_capability`).
"""

from __future__ import annotations

import functools
import inspect
import json
import subprocess
import sys
import types
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest
from martlet.manager import PluginManager
from martlet.records import KINDS, NAME_RE, Record, normalize

from martlet_sdk.isolation import activated, isolated_manager

HEAVY_MODULES = ("torch", "transformers")


def requires_capability(capability: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Skip the decorated contract test, with the reason, unless the record claims ``capability``.

    The test must take the ``record`` fixture.
    """

    def decorate(test: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(test)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            record: Record = kwargs["record"]
            if capability not in record.capabilities:
                pytest.skip(
                    f"{record.label} {record.name!r} does not claim the {capability!r} capability"
                )
            return test(*args, **kwargs)

        return wrapper

    return decorate


class RecordContract:
    """Registration checks for one record; subclassed once per kind (``TunerContract``, ...).

    Required fixtures (override them in your subclass):

    * ``plugin`` — the plugin under test: the name of an installed plugin (tested through its
      entry point, as users get it) or a module/object with hook implementations.
    * ``record_name`` — the name of the record under test.

    Provided fixtures: ``contract_manager`` (an isolated manager holding only ``plugin`` and
    the core), ``record`` (the resolved record) and ``impl`` (``record.load()``, skipped with
    the reason when a package in ``requires`` is missing).
    """

    kind: ClassVar[str] = ""
    #: methods the loaded implementation must have: name -> capability that makes it required
    #: (None: always required)
    interface: ClassVar[dict[str, str | None]] = {}

    # --------------------------------------------------------------- fixtures to supply

    @pytest.fixture
    def plugin(self) -> Any:
        raise NotImplementedError(
            f"{type(self).__name__} needs a `plugin` fixture returning the installed plugin's "
            "name or the module that holds its hook implementations"
        )

    @pytest.fixture
    def record_name(self) -> str:
        raise NotImplementedError(
            f"{type(self).__name__} needs a `record_name` fixture returning the name of the "
            f"{self.kind} record under test"
        )

    # --------------------------------------------------------------- provided fixtures

    @pytest.fixture
    def contract_manager(self, plugin: Any) -> Iterator[PluginManager]:
        manager = isolated_manager(plugin)
        with activated(manager):
            yield manager

    @pytest.fixture
    def record(self, contract_manager: PluginManager, record_name: str) -> Record:
        return contract_manager.registry.get(self.kind, record_name)

    @pytest.fixture
    def impl(self, record: Record) -> Any:
        if not record.impl:
            pytest.skip(f"{record.label} {record.name!r} names no implementation (data only)")
        missing = record.missing_requirements()
        if missing:
            pytest.skip(f"{record.label} {record.name!r} needs {', '.join(missing)}")
        return record.load()

    # --------------------------------------------------------------- checks

    def test_plugin_loads_cleanly(self, contract_manager: PluginManager, plugin: Any) -> None:
        failed = [i for i in contract_manager.plugins if i.effective_status == "failed"]
        assert not failed, "; ".join(f"{i.label}: {i.effective_error}" for i in failed)

    def test_record_is_registered_under_its_name(self, record: Record, record_name: str) -> None:
        assert type(record) is KINDS[self.kind], f"expected a {KINDS[self.kind].__name__}"
        assert normalize(record_name) in {normalize(n) for n in record.names}

    def test_record_fields_are_valid(self, record: Record) -> None:
        assert NAME_RE.match(record.name)
        assert record.summary.strip(), "give the record a one-line summary"
        assert "\n" not in record.summary, "the summary is one line"
        for cap in record.capabilities:
            assert cap == cap.strip().lower() and " " not in cap, f"capability {cap!r}"
        assert record.origin, "the manager records which plugin registered it"

    def test_declared_options_are_option_fields_with_working_defaults(self, record: Record) -> None:
        """A record's ``options`` class (if any) is a dataclass of ``martlet.config.option``
        fields, each with help text, whose checks accept its own defaults — what a command
        composes when the record is selected (``martlet.compose``)."""
        import dataclasses

        from martlet.config import specs

        options = record.options_class()
        if options is None:
            pytest.skip(f"{record.label} {record.name!r} declares no options")
        required = []
        for name, spec in specs(options).items():
            assert spec.help.strip(), f"option {name!r} has no help text (shown by --help)"
            if spec.required:
                required.append(name)
        if not required:  # (a required option is the user's to give: nothing to build here)
            assert dataclasses.is_dataclass(options())

    def test_declared_options_reach_a_command_that_selects_the_record(self, record: Record) -> None:
        """A command option that names records of this kind (``names_of``) composes the
        record's options when the user selects it: its flags parse, their values are what the
        command hands the record (:func:`martlet.compose.chosen_options`), and without the
        selection the same flags are refused naming the record. No command plugin needed."""
        import dataclasses

        from martlet import compose
        from martlet.config import build, option, parse_flags, specs
        from martlet.errors import ConfigError

        options = record.options_class()
        if options is None:
            pytest.skip(f"{record.label} {record.name!r} declares no options")
        declared = specs(options)
        if any(spec.required for spec in declared.values()):
            pytest.skip("a required option is the user's to give")
        command = dataclasses.make_dataclass(
            "ContractCommand",
            [("pick", str, option("", help=f"A {record.label}.", names_of=self.kind))],
            kw_only=True,
        )
        flags: list[str] = []
        for spec in declared.values():
            if isinstance(spec.default, bool):
                flags += [spec.flag, str(spec.default).lower()]
            elif isinstance(spec.default, (str, int, float)) and spec.default != "":
                flags += [spec.flag, str(spec.default)]
        config = build(command, flags=parse_flags(command, ["--pick", record.name, *flags]).values)
        chosen = compose.chosen_options(config, "pick")
        assert set(chosen) == set(declared), "the command hands the record all its options"
        for name, spec in declared.items():
            if not callable(spec.default):
                assert chosen[name] == getattr(options(), name), name
        if flags:
            with pytest.raises(ConfigError) as refused:
                build(command, flags=parse_flags(command, flags[:2]).values)
            assert f"{flags[0]} is an option of {record.label}" in str(refused.value)
            assert record.name in str(refused.value)

    def test_aliases_resolve_to_the_record(
        self, contract_manager: PluginManager, record: Record
    ) -> None:
        for name in record.names:
            for spelling in (name, name.upper(), name.replace("-", "_")):
                assert contract_manager.registry.get(self.kind, spelling) is record

    def test_record_round_trips_to_json(self, record: Record) -> None:
        data = json.loads(json.dumps(record.to_dict()))
        assert data["name"] == record.name and data["kind"] == self.kind

    def test_impl_resolves(self, record: Record) -> None:
        if not record.impl:
            pytest.skip(f"{record.label} {record.name!r} names no implementation (data only)")
        missing = record.missing_requirements()
        if missing:
            pytest.skip(f"{record.label} {record.name!r} needs {', '.join(missing)}")
        assert record.load() is not None

    def test_impl_has_the_interface(self, record: Record, impl: Any) -> None:
        if not self.interface:
            pytest.skip(f"no interface is settled yet for {self.kind}")
        for member, capability in self.interface.items():
            if capability is not None and capability not in record.capabilities:
                continue
            assert callable(getattr(impl, member, None)), (
                f"{record.impl} lacks {member}() required of {self.kind}"
                + (f" that claim {capability!r}" if capability else "")
            )

    def test_entry_module_imports_no_heavy_library(self, plugin: Any) -> None:
        module = _entry_module(plugin)
        if module is None:
            pytest.skip("the plugin is not an importable module (a local object)")
        code = (
            f"import sys, importlib; importlib.import_module({module!r}); "
            f"print([m for m in {HEAVY_MODULES!r} if m in sys.modules])"
        )
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.strip()
        assert out == "[]", f"importing {module} imported {out}; import them inside functions"

    def test_registration_hook_has_no_side_effects(
        self, contract_manager: PluginManager, record: Record
    ) -> None:
        again = [r for r in contract_manager._collect_all()[self.kind] if r.name == record.name]
        assert again == [record], "the hook must yield the same record every time it is called"


def _entry_module(plugin: Any) -> str | None:
    if isinstance(plugin, str):
        from importlib import metadata

        for ep in metadata.entry_points(group="martlet"):
            dist = getattr(ep, "dist", None)
            names = {normalize(ep.name), normalize(dist.metadata["Name"]) if dist else ""}
            if normalize(plugin) in names:
                return ep.value
        return None
    if isinstance(plugin, types.ModuleType) and getattr(plugin, "__spec__", None):
        name = plugin.__spec__.name
        return None if name.startswith("martlet_local_") else name
    return None


def contract_for(kind: str) -> type[RecordContract]:
    """The contract base class for ``kind`` (``"tuners"`` -> ``TunerContract``)."""
    from martlet_sdk import contracts

    for obj in vars(contracts).values():
        if inspect.isclass(obj) and issubclass(obj, RecordContract) and obj.kind == kind:
            return obj
    raise KeyError(kind)
