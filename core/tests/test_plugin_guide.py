"""The plugin author's guide says what each kind's implementation receives and returns, and how a
command uses the registry, exactly as the docstrings of ``martlet.interfaces``,
``martlet.registry`` and ``Record`` say it: those sections of ``docs/plugins.md`` are generated
from them, a change to either side without the other fails here, and the guide's registry
example runs."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from martlet import interfaces, registry
from martlet.errors import UnknownNameError
from martlet.records import KINDS, Record
from martlet_sdk import hookdoc

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"
REGENERATE = "run `python -m martlet_sdk.hookdoc docs/plugins.md`"


def _section(name: str) -> str:
    text = GUIDE.read_text(encoding="utf-8")
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    assert start in text and end in text, f"docs/plugins.md lost its {name} markers"
    return text.split(start, 1)[1].split(end, 1)[0]


def _signature(name: str, func) -> str:
    return f"def {name}{inspect.signature(func)}".replace("'", "")


@pytest.mark.parametrize("name", ["interfaces", "registry"])
def test_generated_section_matches_the_docstrings(name):
    assert _section(name) == f"\n\n{hookdoc.SECTIONS[name]()}\n", (
        f"the {name} section of docs/plugins.md is out of step with the docstrings: {REGENERATE}"
    )


def test_a_changed_docstring_puts_the_guide_out_of_step(monkeypatch):
    text = GUIDE.read_text(encoding="utf-8")
    assert hookdoc.render(text) == text, REGENERATE
    monkeypatch.setattr(interfaces.Tuner.load, "__doc__", "Changed, and the guide not.")
    assert "Changed, and the guide not." in hookdoc.render_interfaces()
    assert hookdoc.render(text) != text


def test_every_kind_says_what_load_returns():
    section = _section("interfaces")
    headings = re.findall(r"^### `(\w+)`$", section, re.M)
    assert headings == list(KINDS)
    for kind, entry in hookdoc.interface_entries().items():
        assert entry.strip(), f"martlet/interfaces.py says nothing about {kind}"


def test_a_kind_missing_from_the_interfaces_docstring_is_an_error(monkeypatch):
    doc = interfaces.__doc__.replace("\ncallbacks\n", "\nnot_a_kind\n")
    monkeypatch.setattr(interfaces, "__doc__", doc)
    with pytest.raises(ValueError, match="callbacks"):
        hookdoc.interface_entries()


def test_every_protocol_is_documented_with_its_exact_methods():
    section = _section("interfaces")
    protocols = {
        obj
        for obj in vars(interfaces).values()
        if isinstance(obj, type)
        and getattr(obj, "_is_protocol", False)
        and obj.__module__ == interfaces.__name__
    }
    named = {hookdoc.interface_protocol(e) for e in hookdoc.interface_entries().values()}
    named |= set(hookdoc.other_protocols())  # contracts between plugins that are no kind
    assert protocols <= named, f"not documented: {sorted(p.__name__ for p in protocols - named)}"
    for protocol in protocols:
        assert f"class {protocol.__name__}(Protocol):" in section
        for name, member in vars(protocol).items():
            if inspect.isfunction(member) and (not name.startswith("_") or name == "__call__"):
                assert _signature(name, member) in section, (protocol.__name__, name)
                assert member.__doc__, f"{protocol.__name__}.{name} has no docstring"


def test_every_public_registry_method_and_function_is_documented():
    section = _section("registry")
    public = [n for n in dir(registry.Registry) if not n.startswith("_")]
    assert {"records", "names", "find", "get"} <= set(public)
    for name in public:
        assert _signature(name, getattr(registry.Registry, name)) in section, name
        assert f"- `{name}`: " in section, name
    functions = [
        n
        for n, f in vars(registry).items()
        if not n.startswith("_") and inspect.isfunction(f) and f.__module__ == registry.__name__
    ]
    assert sorted(functions) == ["find", "get", "names", "records"]
    for name in functions:
        assert _signature(name, getattr(registry, name)) in section, name
    for name in ("load", "missing_requirements", "to_dict"):
        assert _signature(name, getattr(Record, name)) in section, name


LOSSES = """
    from martlet import hookimpl
    from martlet.records import LossRecord

    @hookimpl
    def martlet_losses():
        yield LossRecord(name="my-loss", impl="json:dumps", inputs="logps", aliases=("ml",),
                         summary="mine")
        yield LossRecord(name="other", impl="json:loads", summary="another")
"""


def test_the_registry_example_runs(fresh_manager, make_module):
    blocks = re.findall(r"```python\n(.*?)\n```", _section("registry"), re.S)
    example = next(b for b in blocks if "@click.command()" in b)
    namespace: dict = {}
    exec(compile(example, "docs/plugins.md", "exec"), namespace)
    command = namespace["losses"]
    fresh_manager.register(make_module("guide_losses", LOSSES), name="guide-losses")
    runner = CliRunner()

    listed = runner.invoke(command, [])
    assert listed.exit_code == 0, listed.output
    assert listed.output.splitlines() == ["my-loss  logps   mine", "other    batch   another"]

    shown = runner.invoke(command, ["ML"])
    assert shown.exit_code == 0, shown.output
    origin = registry.get("losses", "my-loss").origin
    assert shown.output.startswith(f"my-loss ({origin}): json:dumps(obj, *")

    typo = runner.invoke(command, ["my-los"])
    assert isinstance(typo.exception, UnknownNameError)
    assert "did you mean 'my-loss'" in typo.exception.message()
