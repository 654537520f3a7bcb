"""The error family every user-facing failure belongs to.

A :class:`MartletError` carries three parts — *what* went wrong, *why*, and *what to do* —
and the CLI prints them as one short message without a traceback (``--debug`` or
``MARTLET_DEBUG=1`` adds it).
"""

from __future__ import annotations


class MartletError(Exception):
    """A failure the user can act on.

    Args:
        what: one sentence naming what failed.
        why: the cause, in the user's terms.
        fix: what to do about it.
        cause: the original exception, kept for ``--debug``.
    """

    exit_code = 1

    def __init__(
        self,
        what: str,
        *,
        why: str | None = None,
        fix: str | None = None,
        cause: BaseException | None = None,
    ) -> None:
        self.what = what
        self.why = why
        self.fix = fix
        self.cause = cause
        super().__init__(self.message())
        if cause is not None:
            self.__cause__ = cause

    def message(self) -> str:
        lines = [self.what]
        if self.why:
            lines.append(f"  why: {self.why}")
        if self.fix:
            lines.append(f"  fix: {self.fix}")
        return "\n".join(lines)


def brief(exc: BaseException) -> str:
    """``TypeName: the first line of its message``: the ``why`` of a MartletError that reports
    another library's failure (the whole text stays in ``cause``, shown by ``--debug``)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


class ConfigError(MartletError):
    """An option, flag or config file is wrong."""

    exit_code = 2


class RecordError(MartletError):
    """A plugin yielded a record that does not validate."""


class PluginError(MartletError):
    """A plugin could not be loaded, or two plugins conflict."""


class UnknownNameError(MartletError):
    """A name asked for in some kind (a tuner, a loss, ...) is not registered."""

    exit_code = 2


class MissingDependencyError(MartletError):
    """An implementation needs a package that is not installed."""
