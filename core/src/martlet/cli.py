"""The ``martlet`` command line.

The group knows no command itself: every command is a :class:`~martlet.records.CommandRecord`
(the core's ``version``, ``plugins`` and ``doctor`` come from a built-in plugin), listed in
``--help`` from the record's summary and imported only when invoked.

Options understood anywhere on the command line, before any command runs:

* ``--plugin FILE.py`` (also ``--external-plugins``/``--external_plugins``, repeatable):
  load hook implementations from a plain Python file for this run.
* ``--debug`` (or ``MARTLET_DEBUG=1``): show tracebacks with errors.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import click

from martlet import config as cfg
from martlet.errors import MartletError, PluginError
from martlet.manager import PluginWarning, get_manager

_PLUGIN_FLAGS = {"--plugin", "--plugins", "--external-plugins", "--external_plugins"}
#: commands that must work while a plugin the user asked for is broken
_DIAGNOSTIC = {"plugins", "doctor", "version"}


def _installed(kind: str, spec: Any = None) -> str:
    """`` Installed: a, b, c.`` — the names of ``kind`` in use now (those ``spec``'s ``where``
    allows), for ``--help``."""
    try:
        records = get_manager().registry.records(kind)
    except MartletError:
        return ""
    names = [r.name for r in records if spec is None or spec.qualifies(r)]
    return f" Installed: {', '.join(names)}." if names else f" None installed ({kind})."


def _command_or_error(manager: Any, name: str) -> Any:
    """The command ``name``, or the registry's helpful error — which, for a name nobody
    registers, also names the installed plugins that failed to load: one of them may be the
    plugin that provides it."""
    from martlet.errors import UnknownNameError
    from martlet.manager import FAILED

    try:
        return manager.registry.get("commands", name)
    except UnknownNameError as exc:
        failed = [i for i in manager.plugins if i.effective_status == FAILED]
        if not failed:
            raise
        states = [(info, manager.unavailable(info)) for info in failed]
        errors = "; ".join(f"{info.label}: {why}" for info, (_, why, _) in states)
        raise UnknownNameError(
            exc.what,
            why=(f"{exc.why} " if exc.why else "")
            + f"installed plugins that failed to load, one of which may provide it: {errors}",
            fix=f"{states[0][1][2]}; or {exc.fix}",
        ) from exc


class MartletGroup(click.Group):
    """A click group whose commands come from the registry of ``commands`` records."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return get_manager().registry.names("commands")

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        record = get_manager().registry.find("commands", cmd_name)
        if record is None:
            return None
        command = record.load()
        if not isinstance(command, click.Command):
            raise PluginError(
                f"command {record.name!r} from {record.origin} is not a click command",
                why=f"{record.impl} is a {type(command).__name__}",
                fix="its plugin must point impl at a click.Command",
            )
        return command

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0]
        if name.startswith("-"):
            return super().resolve_command(ctx, args)
        manager = get_manager()
        found = manager.registry.find("commands", name)
        if found is None or found.name not in _DIAGNOSTIC:
            # before "unknown command": the failed plugin may be the one that provides it
            manager.check_requested()
        record = found or _command_or_error(manager, name)
        return record.name, self.get_command(ctx, record.name), args[1:]

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(r.name, r.summary) for r in get_manager().registry.records("commands")]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(
    cls=MartletGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--plugin",
    "plugin_files",
    multiple=True,
    metavar="FILE.py",
    help="Load hook implementations from a Python file for this run (repeatable; "
    "alias --external-plugins).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks with errors (or MARTLET_DEBUG=1).")
def cli(plugin_files: Sequence[str], debug: bool) -> None:
    """Martlet: fine-tune, align, quantize, evaluate and serve language models.

    Every command below comes from a plugin; `martlet plugins` shows which.
    """


# ---------------------------------------------------------------- config commands


class ConfigCommand(click.Command):
    """A command whose options are the fields of a config dataclass (see :mod:`martlet.config`).

    Accepts ``--config FILE`` (YAML/JSON), ``--print-config``, flags in kebab- or snake-case and
    every option's aliases; ``--help`` lists the options from the dataclass.

    Before the command runs — and before ``--print-config`` prints — the config goes through
    the checks a run makes before it loads anything: the config class's own validation (in
    :func:`martlet.config.build`) and ``check``, the command's own check of the config
    (``check(config)``; it may raise :class:`~martlet.errors.MartletError`, and must load no
    model or data). So ``--print-config`` never prints a config the run would refuse: it exits
    with the run's error instead. The plugins' ``martlet_configure`` hooks run only for a run,
    between the two.
    """

    def __init__(
        self,
        name: str,
        config_cls: type,
        run: Callable[[Any], Any],
        check: Callable[[Any], Any] | None = None,
        **kwargs: Any,
    ):
        kwargs.setdefault("context_settings", {})
        kwargs["context_settings"].update(
            ignore_unknown_options=True, allow_extra_args=True, help_option_names=[]
        )
        super().__init__(name, callback=None, **kwargs)
        self.config_cls = config_cls
        self.run = run
        self.check = check

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        before_dashdash = args[: args.index("--")] if "--" in args else args
        if "--help" in before_dashdash or "-h" in before_dashdash:
            asked = [a for a in before_dashdash if a not in ("--help", "-h")]
            ctx.meta["martlet.help_args"] = asked
            click.echo(self.get_help(ctx), color=ctx.color)
            ctx.exit(0)
        ctx.meta["martlet.args"] = list(args)
        return []

    def invoke(self, ctx: click.Context) -> Any:
        parsed = cfg.parse_flags(self.config_cls, ctx.meta.get("martlet.args", []))
        config = cfg.build(self.config_cls, file=parsed.config_file, flags=parsed.values)
        if parsed.print_config:  # printing is not running: no martlet_configure hooks
            if self.check is not None:
                self.check(config)  # a config the run would refuse is not printed
            click.echo(cfg.to_yaml(config), nl=False)
            return None
        get_manager().configure(config)
        if self.check is not None:
            self.check(config)
        return self.run(config)

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        positional = [s for s in cfg.specs(self.config_cls).values() if s.positional]
        pieces = [f"[{s.name.upper()}]" for s in positional] + ["[OPTIONS]"]
        formatter.write_usage(ctx.command_path, " ".join(pieces))

    def _shown_class(self, ctx: click.Context) -> type:
        """The config class ``--help`` describes: composed with the records the help's own
        command line selects (``martlet sft --tuner boft --help``), their defaults otherwise."""
        from martlet import compose

        if not compose.selectors(self.config_cls):
            return self.config_cls
        values: dict[str, Any] = {}
        try:
            parsed = cfg.parse_flags(self.config_cls, ctx.meta.get("martlet.help_args", []))
            values = dict(parsed.values)
        except MartletError:
            pass  # a help request with a bad flag still shows the help
        try:
            return compose.composed_for(self.config_cls, values)
        except MartletError:
            return self.config_cls

    @staticmethod
    def _row(spec: cfg.OptionSpec) -> tuple[str, str]:
        flag = spec.flag
        if not spec.is_bool:
            # choices keep their case: they are typed as shown
            shown = spec.type_name() if "|" in spec.type_name() else spec.type_name().upper()
            flag += f" {spec.metavar or shown}"
        names = ", ".join(["--" + a.replace("_", "-") for a in spec.aliases])
        text = spec.help
        if spec.names_of:
            text += _installed(spec.names_of, spec)
        if names:
            text += f" (also {names})"
        if spec.required:
            text += " [required]"
        elif spec.default not in (None, "", [], {}, ()):
            text += f" [default: {spec.default}]"
        return flag, text.strip()

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from martlet import compose
        from martlet.records import check_kind

        shown = self._shown_class(ctx)
        all_specs = cfg.specs(shown)
        groups = compose.groups(shown)
        for i, (title, names) in enumerate(groups):
            rows = [self._row(all_specs[n]) for n in names]
            if i == 0:
                rows += [
                    ("--config FILE", "Read options from a YAML or JSON file (flags win)."),
                    (
                        "--print-config",
                        "Print the resolved options as YAML and exit. The command's checks "
                        "that need no model run first: options they refuse are an error "
                        "instead.",
                    ),
                    ("-h, --help", "Show this message and exit."),
                ]
            with formatter.section(title if i else "Options"):
                formatter.write_dl(rows)
        formatter.write_paragraph()
        formatter.write_text("Flags may be written --kebab-case or --snake_case.")
        kinds = {offer.kind for offer in compose.offered(self.config_cls)}
        for sel in compose.selectors(self.config_cls):
            if sel.kind not in kinds:
                continue
            formatter.write_text(
                f"Each {check_kind(sel.kind).label} has its own options: `{ctx.command_path} "
                f"{sel.flag} NAME --help` shows them."
            )


def config_command(
    config_cls: type,
    name: str | None = None,
    *,
    check: Callable[[Any], Any] | None = None,
    **kwargs: Any,
) -> Callable[[Callable[[Any], Any]], ConfigCommand]:
    """Turn ``run(config)`` into a click command whose options are ``config_cls``'s fields.

    ``check(config)``, if given, is the command's check of a config that needs no model or
    data (names resolve, values are in range): it runs before ``run`` and before
    ``--print-config`` prints, so a config the run would refuse is refused there too.

    Example::

        @dataclass
        class HelloConfig:
            name: str = option("world", help="who to greet")

        @config_command(HelloConfig)
        def hello(config):
            \"\"\"Say hello.\"\"\"
            click.echo(f"hello {config.name}")
    """
    if not dataclasses.is_dataclass(config_cls):
        raise TypeError("config_command needs a dataclass")

    def decorate(run: Callable[[Any], Any]) -> ConfigCommand:
        help_text = kwargs.pop("help", None) or run.__doc__
        return ConfigCommand(
            name or run.__name__.replace("_", "-"),
            config_cls,
            run,
            check=check,
            help=help_text,
            **kwargs,
        )

    return decorate


# ---------------------------------------------------------------- entry point


def _pre_scan(argv: list[str]) -> tuple[list[str], bool, list[str]]:
    """Pull ``--plugin FILE`` and ``--debug`` out of the command line, wherever they are."""
    files: list[str] = []
    rest: list[str] = []
    debug = False
    i = 0
    while i < len(argv):
        token = argv[i]
        if token == "--":
            rest.extend(argv[i:])
            break
        flag, eq, value = token.partition("=")
        if flag in _PLUGIN_FLAGS:
            if eq:
                files.append(value)
            else:
                i += 1
                taken = 0
                # ms-swift's --external_plugins takes several files at once
                while (
                    i < len(argv)
                    and not argv[i].startswith("-")
                    and (taken == 0 or argv[i].endswith(".py"))
                ):
                    files.append(argv[i])
                    i, taken = i + 1, taken + 1
                if not taken:
                    raise click.UsageError(f"{flag} needs the path of a .py file")
                continue
        elif token == "--debug":
            debug = True
        else:
            rest.append(token)
        i += 1
    return files, debug, rest


#: ``--plugin`` files a parent process passes to the ``martlet`` it starts (a training run's
#: launcher to its ranks), separated by ``os.pathsep``
PLUGIN_FILES_ENV = "MARTLET_PLUGIN_FILES"


def _plugin_files(files: list[str]) -> list[str]:
    """The ``--plugin`` files given on the command line, after those a parent passed down."""
    inherited = [f for f in os.environ.get(PLUGIN_FILES_ENV, "").split(os.pathsep) if f]
    return list(dict.fromkeys([*inherited, *files]))


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    if issubclass(category, PluginWarning):
        click.echo(f"martlet: warning: {message}", err=True)
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


_default_showwarning = warnings.showwarning


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code (the ``martlet`` script exits with it)."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = os.environ.get("MARTLET_DEBUG", "").strip().lower() in {"1", "true", "yes", "on"}
    warnings.showwarning = _show_warning
    try:
        files, flag_debug, args = _pre_scan(args)
        debug = debug or flag_debug
        manager = get_manager()
        files = _plugin_files(files)
        for file in files:
            manager.load_file(file)
        result = cli.main(args=args, prog_name="martlet", standalone_mode=False)
        return result if isinstance(result, int) else 0
    except MartletError as exc:
        if debug:
            import traceback

            traceback.print_exception(exc.cause or exc)
        click.echo(f"Error: {exc.message()}", err=True)
        if not debug:
            click.echo("  (--debug shows the traceback)", err=True)
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("Aborted.", err=True)
        return 130
    finally:
        warnings.showwarning = _default_showwarning


def run() -> None:  # console-script entry point
    sys.exit(main())
