"""Fixtures for the core's unit tests.

Everything here builds real things: plugin modules written to files, ``*.dist-info`` folders of
fake installed distributions put on ``sys.path``, and fresh :class:`PluginManager` objects made
the process-wide one for the duration of a test.
"""

from __future__ import annotations

import sys
import textwrap
import types
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from martlet.manager import PluginManager, PluginWarning, set_manager
from martlet_sdk.testing import FakeSite


@pytest.fixture
def fresh_manager() -> Iterator[PluginManager]:
    """A manager with only the core's built-in plugin, made process-wide for the test."""
    manager = PluginManager(environ={}, discover=False)
    previous = set_manager(manager)
    try:
        yield manager
    finally:
        set_manager(previous)


def _plugin_module(name: str, source: str) -> types.ModuleType:
    module = types.ModuleType(name)
    exec(compile(textwrap.dedent(source), f"<{name}>", "exec"), module.__dict__)
    return module


@pytest.fixture
def make_module():
    """``make_module(name, source)``: a module object built from source, not in sys.modules."""
    return _plugin_module


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSite]:
    """Fake distributions on ``sys.path`` (first, so they shadow installed namesakes).

    Modules imported from it are dropped from ``sys.modules`` afterwards.
    """
    fake = FakeSite(tmp_path / "site")
    monkeypatch.syspath_prepend(str(fake.root))
    before = set(sys.modules)
    yield fake
    for name in set(sys.modules) - before:
        module = sys.modules.get(name)
        if str(getattr(module, "__file__", "") or "").startswith(str(fake.root)):
            del sys.modules[name]


def _discover(environ: dict[str, str] | None = None) -> tuple[PluginManager, list[str]]:
    """A manager that discovers installed plugins; returns it and the warnings it gave.

    The registry is built too, so warnings about records are included.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PluginWarning)
        manager = PluginManager(environ=environ or {})
        _ = manager.registry
    messages = [str(w.message) for w in caught if issubclass(w.category, PluginWarning)]
    return manager, messages


@pytest.fixture
def discover():
    """``discover(environ)``: a discovering manager and the plugin warnings it gave."""
    return _discover


GOOD_PLUGIN = """
    from martlet import hookimpl
    from martlet.records import TunerRecord

    MARTLET_API = 1

    @hookimpl
    def martlet_tuners():
        yield TunerRecord(name="{name}", impl="fakeplug_impl:Thing", summary="a fake tuner",
                          aliases={aliases!r})
"""


@pytest.fixture
def tuner_plugin():
    """``tuner_plugin(name, aliases=())``: source of a plugin module registering a tuner."""

    def source(name: str, aliases: tuple[str, ...] = ()) -> str:
        return GOOD_PLUGIN.format(name=name, aliases=aliases)

    return source


LOADERS = """
    from martlet import hookimpl
    from martlet.records import ModelLoaderRecord

    MARTLET_API = 1

    @hookimpl
    def martlet_model_loaders():
        yield ModelLoaderRecord(name="fake-loader", impl="json:dumps", summary="a fake loader")
"""


@pytest.fixture
def loaders_site(site, monkeypatch):
    """An installed distribution ``fake-loaders`` (plugin ``loaders``), the one the providers
    table names for model loaders, as ``martlet-hf`` is for the real ones."""
    from martlet.providers import PROVIDERS

    site.dist(
        "fake-loaders",
        "0.2.0",
        entry_points={"loaders": "fakeplug_loaders"},
        modules={"fakeplug_loaders": LOADERS},
    )
    monkeypatch.setitem(PROVIDERS, "model_loaders", {"fake-loader": "fake-loaders"})
    return site
