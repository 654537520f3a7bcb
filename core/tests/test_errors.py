"""MartletError's parts, and brief(): another library's failure as a one-line reason."""

from martlet.errors import MartletError, brief


def test_the_message_has_what_why_and_fix():
    error = MartletError("it failed", why="a reason", fix="do this")
    assert str(error) == "it failed\n  why: a reason\n  fix: do this"


def test_brief_is_the_type_and_the_first_line_that_says_something():
    assert brief(ValueError("bad value\n  a long traceback-like tail")) == "ValueError: bad value"
    assert brief(RuntimeError("\n\n  the reason\nmore")) == "RuntimeError: the reason"
    assert brief(KeyError()) == "KeyError: "
