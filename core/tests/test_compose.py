"""Options composed from selected records: a command config takes the selected record's
options (flags, files and Python values alike), refuses another record's with the name of the
selection that takes them, checks their values, writes them under the record and reads that
back; a class without selectors is untouched."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import yaml
from martlet import compose
from martlet import config as cfg
from martlet.config import option
from martlet.errors import ConfigError

OPTIONS = """
    from dataclasses import dataclass

    from martlet.config import option, require


    @dataclass(kw_only=True)
    class WideOptions:
        \"\"\"Wide: a tuner with a width\"\"\"

        width: int = option(4, help="How wide.", aliases=("breadth",))
        shared: list[str] = option(default_factory=lambda: ["all"], help="Shared by both.")

        def __post_init__(self):
            require(self.width >= 1, "width", self.width, "at least 1", "4")


    @dataclass(kw_only=True)
    class DeepOptions:
        \"\"\"Deep: a tuner with a depth\"\"\"

        depth: int = option(2, help="How deep.")
        careful: bool = option(False, help="A flag of deep's.")
        shared: list[str] = option(default_factory=lambda: ["all"], help="Shared by both.")
"""

PLUGIN = """
    from martlet import hookimpl
    from martlet.records import TunerRecord

    @hookimpl
    def martlet_tuners():
        yield TunerRecord(name="wide", impl="json:dumps", options="fake_opts:WideOptions")
        yield TunerRecord(name="deep", impl="json:dumps", options="fake_opts:DeepOptions",
                          aliases=("abyss",))
        yield TunerRecord(name="bare", impl="json:dumps")
"""


@dataclass(kw_only=True)
class Command:
    """What the command itself takes"""

    tuner: str = option("wide", help="The tuner.", names_of="tuners")
    steps: int = option(1, help="Steps.")


@pytest.fixture
def tuners(fresh_manager, make_module, site):
    site.module("fake_opts", OPTIONS)
    fresh_manager.register(make_module("fakeplug_compose", PLUGIN))
    return fresh_manager


def test_the_default_selection_takes_its_records_options(tuners):
    config = cfg.build(Command, values={"width": 8, "steps": 3})
    assert (config.tuner, config.width, config.shared, config.steps) == ("wide", 8, ["all"], 3)
    assert isinstance(config, Command)
    assert not hasattr(config, "depth")


def test_flags_of_the_selected_record_parse_with_their_types(tuners):
    parsed = cfg.parse_flags(Command, ["--tuner", "abyss", "--careful", "--depth", "5"])
    config = cfg.build(Command, flags=parsed.values)
    assert (config.tuner, config.depth, config.careful) == ("abyss", 5, True)


def test_another_records_option_is_an_error_naming_its_record(tuners):
    with pytest.raises(ConfigError) as info:
        cfg.build(Command, flags={"depth": "3"})
    err = info.value
    assert err.what == "--depth is an option of tuner deep, not of tuner 'wide'"
    assert "--tuner deep" in err.fix
    with pytest.raises(ConfigError, match="option 'width' is an option of tuner wide"):
        cfg.build(Command, values={"tuner": "deep", "breadth": 2})
    # a record without options takes none of theirs
    message = "--shared is an option of tuners deep, wide, not of tuner 'bare'"
    with pytest.raises(ConfigError, match=message):
        cfg.build(Command, flags={"tuner": "bare", "shared": ["x"]})


def test_values_are_checked_by_the_records_class_and_unknown_names_suggested(tuners):
    with pytest.raises(ConfigError, match="--width must be at least 1, not 0"):
        cfg.build(Command, flags={"width": "0"})
    with pytest.raises(ConfigError, match="expects int"):
        cfg.build(Command, flags={"width": "lots"})
    with pytest.raises(ConfigError) as info:
        cfg.parse_flags(Command, ["--widht", "3"])
    assert info.value.why == "did you mean --width?"


def test_the_records_options_are_written_under_it_and_read_back(tuners, tmp_path):
    config = cfg.build(Command, values={"tuner": "deep", "depth": 7})
    data = cfg.to_dict(config)
    assert data == {
        "tuner": {"name": "deep", "depth": 7, "careful": False, "shared": ["all"]},
        "steps": 1,
    }
    file = tmp_path / "run.yaml"
    file.write_text(cfg.to_yaml(config))
    again = cfg.build(Command, file=file)
    assert (again.tuner, again.depth) == ("deep", 7)
    assert cfg.selection(yaml.safe_load(file.read_text()), "tuner") == "deep"
    # the flat spelling is read too, and a section's options must be its record's
    file.write_text("tuner: deep\ndepth: 2\n")
    assert cfg.build(Command, file=file).depth == 2
    file.write_text("tuner:\n  name: wide\n  depth: 2\n")
    with pytest.raises(ConfigError, match="option 'depth' in run.yaml is an option of tuner deep"):
        cfg.build(Command, file=file)


def test_help_groups_show_the_selected_records_options_by_class(tuners):
    ((field, chosen),) = compose.selected(Command, {})
    shown = compose.composed(Command, ((field, chosen.cls),))
    titles = [title for title, _ in compose.groups(shown)]
    assert titles[0].startswith("What the command itself takes")
    assert titles[-1].startswith("Wide: a tuner with a width")
    assert compose.groups(shown)[-1][1] == ["width", "shared"]


def test_a_class_without_selectors_is_untouched(fresh_manager):
    @dataclass
    class Plain:
        size: int = option(1, help="Size.")

    config = cfg.build(Plain, flags={"size": "2"})
    assert type(config) is Plain and config.size == 2
    assert cfg.to_dict(config) == {"size": 2}


@dataclass(kw_only=True)
class ManyCommand:
    """A command that takes several tuners"""

    tuners: list[str] = option(default_factory=list, help="The tuners.", names_of="tuners")


def test_a_list_selector_takes_names_joined_by_commas(tuners):
    # `--tasks a,b` names two records: the options of both are accepted
    parsed = cfg.parse_flags(
        ManyCommand, ["--tuners", "wide,abyss", "--width", "8", "--depth", "5"]
    )
    config = cfg.build(ManyCommand, flags=parsed.values)
    assert (config.width, config.depth) == (8, 5)
    with pytest.raises(ConfigError, match="depth"):
        cfg.build(
            ManyCommand,
            flags=cfg.parse_flags(ManyCommand, ["--tuners", "wide", "--depth", "5"]).values,
        )
