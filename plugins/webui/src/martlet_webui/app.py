"""The Gradio app: four tabs over Martlet's commands — Train, Chat, Evaluate, Export.

Every form is drawn from what is installed: the names offered come from the registry, and the
fields from the option declarations of the command and of the records chosen
(:mod:`martlet_webui.forms`), so a tuner, loss, task or quantizer a plugin installs appears with
its own fields. Every action is a ``martlet`` command line, shown next to its button as the
form changes, and run as shown (:mod:`martlet_webui.commands`, :mod:`martlet_webui.jobs`); the
Chat tab answers in this process, through the core's model, template and engine loaders
(:mod:`martlet_webui.chat`), and shows the ``martlet infer`` line that chats the same way.

gradio is imported inside the functions here, after :func:`offline_environment` has told it
(and the Hugging Face hub client) to make no outside calls.
"""

from __future__ import annotations

import dataclasses
import html
import json
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from martlet.config import option
from martlet.errors import MartletError

from martlet_webui import catalog, commands
from martlet_webui.chat import Chat
from martlet_webui.forms import CHECKBOX, DROPDOWN, NUMBER, Field, fields_of
from martlet_webui.jobs import Job, loss_points, read_metrics

#: how often a running job's log, progress and plot are refreshed, in seconds
REFRESH_S = 1.0
#: form fields side by side
PER_ROW = 3
#: lines of a job's log the log box shows
LOG_LINES = 400
#: the environment variables that keep the UI process offline (set before gradio is imported)
OFFLINE = {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}


def offline_environment() -> dict[str, str]:
    """Set :data:`OFFLINE` in this process's environment (gradio's usage statistics and
    update check off, the hub client offline); return the environment as it was, which the
    commands the UI starts get — they behave as the same command line in a terminal."""
    before = dict(os.environ)
    os.environ.update(OFFLINE)
    return before


def _gradio() -> Any:
    os.environ.update(OFFLINE)  # before the first import of gradio
    import gradio

    return gradio


@dataclasses.dataclass(kw_only=True)
class ChatSettings:
    """Generation settings of the Chat tab"""

    max_new_tokens: int = option(256, help="Most tokens in an answer.")
    temperature: float = option(0.7, help="Sampling temperature; 0 is greedy decoding.")
    top_p: float = option(0.9, help="Nucleus sampling: keep the smallest set with this mass.")


class Inputs:
    """The components one action reads, in order, by key: what a handler's ``*values`` are.
    ``tab`` begins the element ids of the fields it draws (``train-main-max_steps``)."""

    def __init__(self, tab: str) -> None:
        self.tab = tab
        self.keys: list[tuple[str, ...]] = []
        self.components: list[Any] = []

    def add(self, key: tuple[str, ...], component: Any) -> Any:
        self.keys.append(key)
        self.components.append(component)
        return component

    def values(self, args: Sequence[Any]) -> dict[tuple[str, ...], Any]:
        return dict(zip(self.keys, args, strict=True))


def _component(gr: Any, field: Field, **kwargs: Any) -> Any:
    """The gradio component of a :class:`Field`."""
    common = dict(label=field.label, info=field.info or None, **kwargs)
    if field.widget == CHECKBOX:
        return gr.Checkbox(value=bool(field.value), **common)
    if field.widget == DROPDOWN:
        return gr.Dropdown(choices=list(field.choices), value=field.value, **common)
    if field.widget == NUMBER:
        return gr.Number(value=field.value, precision=0 if field.integer else None, **common)
    return gr.Textbox(value=field.value, **common)


def _fields(gr: Any, inputs: Inputs, prefix: tuple[str, ...], fields: Sequence[Field]) -> None:
    """Components for ``fields``, three to a row, registered in ``inputs`` under ``prefix``."""
    for start in range(0, len(fields), PER_ROW):
        with gr.Row(equal_height=True):
            for field in fields[start : start + PER_ROW]:
                key = (*prefix, field.name)
                elem_id = re.sub(r"[^\w-]", "-", "-".join((inputs.tab, *key)))
                inputs.add(key, _component(gr, field, elem_id=elem_id))


def _chosen_options(
    groups: Sequence[catalog.OptionGroup], chosen: Sequence[str], values: Mapping[Any, Any]
) -> dict[str, Any]:
    """The values of the option groups of the records ``chosen`` (drawn by
    :meth:`WebUI._option_group`), by option name; the first group's where two share one."""
    options: dict[str, Any] = {}
    for og in groups:
        if og.selected(chosen):
            for field in og.fields:
                options.setdefault(field.name, values[("group", og.key, field.name)])
    return options


def error_html(exc: BaseException) -> str:
    """A failure as the status box shows it: what, why and what to do."""
    if isinstance(exc, MartletError):
        parts = [f"<b>{html.escape(exc.what)}</b>"]
        if exc.why:
            parts.append(f"<pre>why: {html.escape(exc.why)}</pre>")
        if exc.fix:
            parts.append(f"<div>fix: {html.escape(exc.fix)}</div>")
    else:
        parts = [f"<b>{html.escape(type(exc).__name__)}: {html.escape(str(exc))}</b>"]
    return f'<div class="martlet-error">{"".join(parts)}</div>'


def _status_html(job: Job, extra: str = "", unit: str = "") -> str:
    """The status line of a job: its state, its progress bar's count, ``extra``; a failed
    command's error, with its last output, instead."""
    text = f"<b>{html.escape(job.status())}</b>"
    progress = job.progress()
    if progress is not None and (job.running or progress[0] == progress[1]):
        done, total = progress
        text += f' <progress value="{done}" max="{max(total, 1)}"></progress> {unit}{done}/{total}'
    failure = job.failure()
    if failure is not None:
        return error_html(failure)
    return f'<div class="martlet-status">{text}{extra}</div>'


def _loss_frame(points: Sequence[Mapping[str, Any]]) -> Any:
    """The loss plot's data: step, loss and series (train or eval) columns; None before the
    first point (gradio's plot draws no line after an empty frame)."""
    import pandas as pd

    if not points:
        return None
    return pd.DataFrame(
        {
            "step": pd.Series([p["step"] for p in points], dtype="int64"),
            "loss": pd.Series([p["loss"] for p in points], dtype="float64"),
            "series": pd.Series([p["series"] for p in points], dtype="str"),
        }
    )


def _command_text(build: Callable[[], list[str]]) -> str:
    try:
        return commands.shell(build())
    except MartletError as exc:
        return f"# {exc.message()}".replace("\n", "\n# ")


def _under(path: str, root: Path) -> str:
    """``path`` relative to ``root`` when it is inside it, else as it is."""
    try:
        return str(Path(path).resolve().relative_to(root))
    except ValueError:
        return path


def local_plugin_files() -> list[str]:
    """The plugin files this process loaded with ``martlet --plugin FILE``."""
    from martlet.manager import get_manager

    files = []
    for info in get_manager().plugins:
        path = getattr(info.obj, "__file__", None) if info.source == "local" else None
        if path and str(path).endswith(".py"):
            files.append(str(path))
    return files


@dataclasses.dataclass
class Tab:
    """What a tab asks of the page load: a function of its form's values and where its
    results go (the command line, a fresh output folder)."""

    inputs: list[Any]
    load: Callable[..., Any]
    outputs: list[Any]


#: the key of the "more flags" box every command tab ends its form with
MORE_FLAGS = ("extra",)
#: the columns of the Evaluate tab's scores and of the Export tab's list of files written
SCORE_COLUMNS = ["task", "metric", "value"]
FILE_COLUMNS = ["file", "bytes"]


@dataclasses.dataclass
class Shown:
    """What a command tab shows of its job at a refresh: more of the status line, a new value
    for its result component (by default it is left as it is), whether the output folder field
    gets a fresh folder (the job's is taken)."""

    extra: str = ""
    result: Any = dataclasses.field(default_factory=lambda: _gradio().skip())
    fresh: bool = False


@dataclasses.dataclass(kw_only=True)
class CommandTab:
    """What a tab that runs a ``martlet`` command states of its own; the rest — the "more
    flags" box, the command line kept current, Start running it as the tab's job and following
    it, Stop, a fresh output folder on each page load — is :meth:`WebUI._command_tab`'s.

    Attributes:
        name: the job's name and the element ids' prefix (``train-start``, ``train-log``).
        button: the start button's label.
        more_flags: the help of the "more flags" box (its value is under :data:`MORE_FLAGS`).
        inputs: the form's fields, drawn by the tab above what this adds.
        form: the form's values by key -> the command's form (``commands.TrainForm``, ...).
        argv: that form -> the command's argv (``commands.train_argv``, ...).
        result: draws the component a job's result goes to, beside the log.
        show: ``(form, job, done)`` -> what the tab shows of the job now; a MartletError
            is shown as the status.
        output_dir: the key in ``inputs`` of the output folder field.
        stem: that form -> the name a fresh output folder is numbered from (``sft-3``);
            by default the tab's name (``eval-2``).
        unit: what the progress count counts (``"step "``).
    """

    name: str
    button: str
    more_flags: str
    inputs: Inputs
    form: Callable[[dict[tuple[str, ...], Any]], Any]
    argv: Callable[[Any], list[str]]
    result: Callable[[], Any]
    show: Callable[[Any, Job, bool], Shown]
    output_dir: tuple[str, ...] = ("output_dir",)
    stem: Callable[[Any], str] | None = None
    unit: str = ""

    def fresh_stem(self, form: Any) -> str:
        """The stem of a fresh output folder for ``form``."""
        return self.name if self.stem is None else self.stem(form)


def when_done(result: Callable[[Any], Shown]) -> Callable[[Any, Job, bool], Shown]:
    """A :attr:`CommandTab.show` that shows nothing more than the status until the job has
    ended well, then ``result(form)``, with a fresh output folder."""

    def show(form: Any, job: Job, done: bool) -> Shown:
        if not done or job.returncode != 0:
            return Shown()
        return dataclasses.replace(result(form), fresh=True)

    return show


class WebUI:
    """The app's state (the jobs it started, the loaded chat model) and its Gradio Blocks.

    Args:
        root: the folder commands run in; relative output folders are under it.
        env: the environment the commands get (:func:`offline_environment`'s return).
        output: the folder new runs, evaluations and exports go under by default.
        plugins: local plugin files (``--plugin FILE``) every command it runs loads too;
            by default those this process loaded.
    """

    def __init__(
        self,
        root: str | Path | None = None,
        env: Mapping[str, str] | None = None,
        output: str = "output",
        plugins: Sequence[str] | None = None,
    ) -> None:
        self.root = Path(root or Path.cwd()).resolve()
        self.env = dict(env if env is not None else os.environ)
        self.output = output
        files = plugins if plugins is not None else local_plugin_files()
        # a file in the folder the UI runs in is named as the user named it
        self.plugins = [_under(f, self.root) for f in files]
        self.jobs: dict[str, Job] = {}
        self.chat = Chat()

    # ------------------------------------------------------------------ shared pieces

    def runs(self) -> list[str]:
        """Run directories under the output folder, as paths relative to :attr:`root`."""
        found = catalog.runs(self.root / self.output)
        return [os.path.relpath(p, self.root) for p in found]

    def fresh(self, stem: str) -> str:
        """A folder under the output folder that does not exist yet (relative to root)."""
        return os.path.relpath(catalog.fresh_dir(self.root / self.output, stem), self.root)

    def line(self, argv: list[str]) -> list[str]:
        """A tab's command line as shown and run: with the UI's local plugin files."""
        return commands.with_plugins(argv, self.plugins)

    def start(self, tab: str, argv: list[str]) -> Job:
        """Check ``argv`` as its command will, then run it as ``tab``'s job.

        Raises:
            MartletError: the tab's previous job still runs, or the command refuses the form.
        """
        running = self.jobs.get(tab)
        if running is not None and running.running:
            raise MartletError(
                f"`{commands.shell(running.argv)}` is running already",
                fix="wait for it to end, or stop it, before starting another",
            )
        commands.check_argv(argv)
        job = Job(argv, cwd=self.root, env=self.env)
        self.jobs[tab] = job
        return job

    def stop(self, tab: str) -> str:
        job = self.jobs.get(tab)
        if job is None or not job.running:
            return '<div class="martlet-status">nothing is running</div>'
        job.stop()
        return _status_html(job)

    @staticmethod
    def follow(job: Job, update: Callable[[bool], list[Any]]) -> Iterator[list[Any]]:
        """``update(done)`` every :data:`REFRESH_S` seconds until ``job`` has ended, then
        once more with ``done`` True."""
        while not job.finished():
            yield update(False)
            time.sleep(REFRESH_S)
        yield update(True)

    # ----------------------------------------------------------------------- build

    def build(self) -> Any:
        """The Gradio Blocks of the four tabs."""
        gr = _gradio()
        with gr.Blocks(title="Martlet", analytics_enabled=False) as demo:
            gr.Markdown(
                "## Martlet\nEvery action is a `martlet` command line, shown above its "
                "button as the form changes: copy it to do the same in a terminal."
            )
            tabs = []
            for title, builder in (
                ("Train", self._train_tab),
                ("Chat", self._chat_tab),
                ("Evaluate", self._eval_tab),
                ("Export", self._export_tab),
            ):
                with gr.Tab(title, id=title.lower(), elem_id=f"tab-{title.lower()}") as tab:
                    built = builder(gr, tab)
                if built is not None:
                    tabs.append(built)
            for tab in tabs:
                demo.load(
                    tab.load,
                    inputs=tab.inputs,
                    outputs=tab.outputs,
                    queue=False,
                    show_progress="hidden",
                )
        return demo

    @staticmethod
    def _on_change(gr: Any, inputs: Inputs, fn: Callable[..., Any], outputs: Any) -> None:
        """Run ``fn(*values)`` into ``outputs`` whenever a value of ``inputs`` changes."""
        gr.on(
            [c.change for c in inputs.components],
            fn,
            inputs=inputs.components,
            outputs=outputs,
            queue=False,
            show_progress="hidden",
            trigger_mode="always_last",
        )

    def _run_list(self, gr: Any, tab: Any, info: str, elem_id: str) -> Any:
        """``--adapters``: a choice of run directory (typed, or one found under the output
        folder), whose list is read again each time its tab is opened."""
        runs = gr.Dropdown(
            self.runs(),
            value=None,
            allow_custom_value=True,
            label="--adapters",
            info=info,
            elem_id=elem_id,
        )
        tab.select(
            lambda: gr.Dropdown(choices=self.runs()),
            outputs=runs,
            queue=False,
            show_progress="hidden",
        )
        return runs

    def _job_controls(self, gr: Any, prefix: str, label: str) -> tuple[Any, Any, Any, Any]:
        """The command line box, the start and stop buttons and the status line."""
        line = gr.Code(
            label="command line",
            language="shell",
            interactive=False,
            wrap_lines=True,
            lines=2,
            elem_id=f"{prefix}-command-line",
        )
        with gr.Row():
            start = gr.Button(label, variant="primary", elem_id=f"{prefix}-start")
            stop = gr.Button("Stop", variant="stop", elem_id=f"{prefix}-stop")
        status = gr.HTML("", elem_id=f"{prefix}-status")
        return line, start, stop, status

    @staticmethod
    def _log(gr: Any, prefix: str) -> Any:
        """The box a job's output scrolls in, kept at its newest line."""
        log = gr.Textbox(
            "",
            label="log",
            lines=14,
            max_lines=14,
            interactive=False,
            elem_id=f"{prefix}-log",
        )
        # a read-only textbox does not follow its end by itself
        log.change(
            None,
            js=f"() => {{ const t = document.querySelector('#{prefix}-log textarea'); "
            "if (t) t.scrollTop = t.scrollHeight; }",
            queue=False,
            show_progress="hidden",
        )
        return log

    @staticmethod
    def _model(gr: Any, elem_id: str) -> Any:
        """A choice of model: a registered one, or a folder typed."""
        return gr.Dropdown(
            catalog.names("models"),
            value=None,
            allow_custom_value=True,
            label="--model",
            info="A registered model, or a model folder.",
            elem_id=elem_id,
        )

    def _model_or_run(self, gr: Any, tab: Any, inputs: Inputs, run_info: str) -> None:
        """A row of two fields: ``--model`` and ``--adapters`` (a run directory)."""
        with gr.Row():
            inputs.add(("model",), self._model(gr, f"{inputs.tab}-model"))
            inputs.add(("adapters",), self._run_list(gr, tab, run_info, f"{inputs.tab}-run"))

    def _output_dir(self, gr: Any, stem: str, info: str, elem_id: str) -> Any:
        """The output folder field, holding a fresh folder."""
        return gr.Textbox(self.fresh(stem), label="--output-dir", elem_id=elem_id, info=info)

    @staticmethod
    def _option_group(
        gr: Any, inputs: Inputs, og: catalog.OptionGroup, visible: bool, elem_id: str | None = None
    ) -> Any:
        """The fields of a record's own options, under its title, in a group shown while it
        is chosen."""
        with gr.Group(visible=visible, elem_id=elem_id) as group:
            gr.Markdown(f"**{og.title}**")
            _fields(gr, inputs, ("group", og.key), og.fields)
        return group

    @staticmethod
    def _show_chosen(
        gr: Any,
        selector: Any,
        chosen: Callable[[Any], list[str]],
        groups: Sequence[catalog.OptionGroup],
        drawn: Sequence[Any],
    ) -> None:
        """Show the option groups (``drawn`` by :meth:`_option_group`) of the records chosen
        in ``selector`` (its value -> their names: ``chosen``), hide the others."""
        selector.change(
            lambda value: [gr.Group(visible=og.selected(chosen(value))) for og in groups],
            inputs=selector,
            outputs=drawn,
            queue=False,
            show_progress="hidden",
        )

    @staticmethod
    def _table(gr: Any, columns: Sequence[str], label: str, elem_id: str) -> Any:
        """An empty read-only table with these columns."""
        import pandas as pd

        frame = pd.DataFrame({c: [] for c in columns})
        return gr.Dataframe(frame, label=label, interactive=False, elem_id=elem_id)

    def _command_tab(self, gr: Any, tab: CommandTab) -> Tab:
        """Below a command tab's own fields: the "more flags" box, the command line, Start
        and Stop, the status line, the result beside the log; and their wiring. Start checks
        and runs the line as the tab's job and refreshes the status, log and result until it
        ends (:attr:`CommandTab.show`); each page load gives the output folder a fresh one."""
        inputs = tab.inputs
        inputs.add(
            MORE_FLAGS,
            gr.Textbox("", label="more flags", elem_id=f"{tab.name}-extra", info=tab.more_flags),
        )
        line, start, stop, status = self._job_controls(gr, tab.name, tab.button)
        with gr.Row():
            result = tab.result()
            log = self._log(gr, tab.name)
        where = inputs.keys.index(tab.output_dir)
        output_dir = inputs.components[where]

        def form_of(args: Sequence[Any]) -> Any:
            return tab.form(inputs.values(args))

        def command_line(*args: Any) -> str:
            return _command_text(lambda: self.line(tab.argv(form_of(args))))

        self._on_change(gr, inputs, command_line, line)

        def run(*args: Any) -> Iterator[list[Any]]:
            try:
                form = form_of(args)
                job = self.start(tab.name, self.line(tab.argv(form)))
            except MartletError as exc:
                yield [error_html(exc), gr.skip(), gr.skip(), gr.skip()]
                return

            def update(done: bool) -> list[Any]:
                try:
                    shown = tab.show(form, job, done)
                except MartletError as exc:
                    return [error_html(exc), job.log(LOG_LINES), gr.skip(), gr.skip()]
                fresh = self.fresh(tab.fresh_stem(form)) if shown.fresh else gr.skip()
                status_line = _status_html(job, shown.extra, tab.unit)
                return [status_line, job.log(LOG_LINES), shown.result, fresh]

            yield from self.follow(job, update)

        start.click(
            run,
            inputs=inputs.components,
            outputs=[status, log, result, output_dir],
            show_progress="hidden",
        )
        stop.click(lambda: self.stop(tab.name), outputs=status, queue=False)

        def load(*args: Any) -> list[Any]:
            values = list(args)
            values[where] = self.fresh(tab.fresh_stem(form_of(args)))
            return [command_line(*values), values[where]]

        return Tab(inputs.components, load, [line, output_dir])

    # ----------------------------------------------------------------------- train

    def _train_tab(self, gr: Any, tab: Any) -> Tab | None:
        from martlet.config import specs

        trainers = sorted(catalog.training_commands(), key=lambda n: n != "sft")
        if not trainers:
            gr.Markdown(
                "No training command is installed: `pip install martlet[train]` "
                "brings `martlet sft`, `pt` and `rlhf`."
            )
            return None
        classes = {name: commands.config_class(name) for name in trainers}
        first = "sft" if "sft" in trainers else trainers[0]
        losses = {name: catalog.selector(c, "losses") for name, c in classes.items()}
        tuner_sel = catalog.selector(classes[first], "tuners")

        def objective(command: str) -> tuple[str, list[tuple[str, str]], str]:
            """The loss selector of ``command``: its label, choices and default."""
            sel = losses[command]
            if sel is None:
                return "objective", [], ""
            choices = [(n, n) for n in catalog.names("losses", where=sel.spec)]
            default = sel.default or ""
            if not default:
                choices.insert(0, (f"(the command's own: {command})", ""))
            return f"{sel.flag} (the objective)", choices, default

        inputs = Inputs("train")
        obj_label, obj_choices, obj_default = objective(first)
        with gr.Row():
            command = inputs.add(
                ("form", "command"),
                gr.Radio(
                    trainers,
                    value=first,
                    label="command",
                    elem_id="train-command",
                    info=" ".join(
                        f"{n}: {catalog.registry().get('commands', n).summary}" for n in trainers
                    ),
                ),
            )
            output_dir = inputs.add(
                ("form", "output_dir"),
                self._output_dir(
                    gr,
                    first,
                    "The run directory it writes (under ./output by default).",
                    "train-output",
                ),
            )
        with gr.Row():
            inputs.add(("form", "model"), self._model(gr, "train-model"))
            inputs.add(
                ("form", "datasets"),
                gr.Dropdown(
                    catalog.names("datasets"),
                    value=[],
                    multiselect=True,
                    allow_custom_value=True,
                    label="--dataset",
                    info="Registered datasets or files; NAME#N reads N rows.",
                    elem_id="train-dataset",
                ),
            )
        with gr.Row():
            tuner = inputs.add(
                ("form", "tuner"),
                gr.Dropdown(
                    catalog.names("tuners"),
                    value=tuner_sel.default if tuner_sel else None,
                    label="--tuner",
                    info="How the weights train; its own options appear below.",
                    elem_id="train-tuner",
                ),
            )
            loss = inputs.add(
                ("form", "objective"),
                gr.Dropdown(
                    obj_choices,
                    value=obj_default,
                    label=obj_label,
                    elem_id="train-objective",
                    info="The loss it trains with; its own options appear below.",
                ),
            )
        gr.Markdown("#### Hyperparameters")
        _fields(gr, inputs, ("main",), fields_of(classes[first], names=commands.MAIN_TRAIN))
        # what one training command has and the others lack (rlhf's --teacher-model, ...)
        common = set.intersection(*(set(specs(c)) for c in classes.values()))
        named = {"model", "dataset", "output_dir", *commands.MAIN_TRAIN}
        named |= {s.field for s in (tuner_sel, *losses.values()) if s is not None}
        own_groups: dict[str, Any] = {}
        for name, cls in classes.items():
            own = [f for f in fields_of(cls) if f.name not in common | named]
            if own:
                with gr.Group(visible=name == first) as group:
                    gr.Markdown(f"**Options of `martlet {name}`**")
                    _fields(gr, inputs, ("command", name), own)
                own_groups[name] = group
        # every tuner's and loss's own options, shown while it is chosen
        record_groups: dict[str, tuple[catalog.OptionGroup, Any]] = {}
        chosen_now = [tuner_sel.default if tuner_sel else "", obj_default]
        for name in trainers:
            for og in commands.train_record_groups(name):
                if og.key not in record_groups:
                    elem_id = f"train-options-{og.kind}-{og.records[0]}"
                    group = self._option_group(gr, inputs, og, og.selected(chosen_now), elem_id)
                    record_groups[og.key] = (og, group)

        def form(values: Mapping[tuple[str, ...], Any]) -> commands.TrainForm:
            cmd = values[("form", "command")]
            options = {k[1]: v for k, v in values.items() if k[0] == "main"}
            options.update({k[2]: v for k, v in values.items() if k[:2] == ("command", cmd)})
            chosen = [values[("form", "tuner")] or "", values[("form", "objective")] or ""]
            return commands.TrainForm(
                command=cmd,
                model=values[("form", "model")] or "",
                datasets=list(values[("form", "datasets")] or []),
                tuner=values[("form", "tuner")] or "",
                objective=values[("form", "objective")] or "",
                output_dir=values[("form", "output_dir")] or "",
                options=options,
                record_options=_chosen_options(
                    [og for og, _ in record_groups.values()], chosen, values
                ),
                extra=values[MORE_FLAGS] or "",
            )

        def show(train: commands.TrainForm, job: Job, done: bool) -> Shown:
            run_dir = self.root / train.output_dir
            rows = read_metrics(run_dir)
            latest = next((r for r in reversed(rows) if "loss" in r), None)
            more = f" · loss {latest['loss']:.4f}" if latest else ""
            if done and (run_dir / "config.yaml").is_file():
                more += f" · run directory: <code>{html.escape(train.output_dir)}</code>"
            return Shown(more, _loss_frame(loss_points(rows)), fresh=done)

        groups = [g for _, g in record_groups.values()] + list(own_groups.values())

        def visibility(cmd: str, tuner_name: str | None, loss_name: str | None) -> list[Any]:
            chosen = [tuner_name or "", loss_name or ""]
            return [gr.Group(visible=og.selected(chosen)) for og, _ in record_groups.values()] + [
                gr.Group(visible=n == cmd) for n in own_groups
            ]

        gr.on(
            [command.change, tuner.change, loss.change],
            visibility,
            inputs=[command, tuner, loss],
            outputs=groups,
            queue=False,
            show_progress="hidden",
        )

        def command_changed(cmd: str) -> list[Any]:
            label, choices, default = objective(cmd)
            return [gr.Dropdown(choices=choices, value=default, label=label), self.fresh(cmd)]

        command.input(
            command_changed,
            inputs=command,
            outputs=[loss, output_dir],
            queue=False,
            show_progress="hidden",
        )

        return self._command_tab(
            gr,
            CommandTab(
                name="train",
                button="Start training",
                more_flags="Any other option of the command, as typed in a terminal "
                "(--warmup-ratio 0.1).",
                inputs=inputs,
                output_dir=("form", "output_dir"),
                form=form,
                argv=commands.train_argv,
                stem=lambda train: train.command,
                result=lambda: gr.LinePlot(
                    _loss_frame([]),
                    x="step",
                    y="loss",
                    color="series",
                    title="loss",
                    elem_id="train-loss",
                    height=320,
                ),
                show=show,
                unit="step ",
            ),
        )

    # ------------------------------------------------------------------------ chat

    def _chat_tab(self, gr: Any, tab: Any) -> Tab:
        inputs = Inputs("chat")
        self._model_or_run(
            gr,
            tab,
            inputs,
            "Or a run directory: its base model with what it trained (wins over --model).",
        )
        settings = fields_of(ChatSettings)
        _fields(gr, inputs, ("generation",), settings)
        line = gr.Code(
            label="command line (the same chat in a terminal)",
            language="shell",
            interactive=False,
            wrap_lines=True,
            lines=2,
            elem_id="chat-command-line",
        )
        bot = gr.Chatbot(label="chat", height=360, buttons=["copy", "copy_all"], elem_id="chat-bot")
        history = gr.State([])
        with gr.Row():
            message = gr.Textbox(
                "",
                placeholder="Type a message and press Enter",
                scale=5,
                show_label=False,
                elem_id="chat-message",
            )
            send = gr.Button("Send", variant="primary", scale=1, elem_id="chat-send")
        with gr.Row():
            stop = gr.Button("Stop", elem_id="chat-stop")
            clear = gr.Button("Clear", elem_id="chat-clear")
        status = gr.HTML("", elem_id="chat-status")

        def parts(args: Sequence[Any]) -> tuple[str, str, dict[str, Any]]:
            values = inputs.values(args)
            generation = {}
            for field in settings:
                from martlet_webui.forms import value_of

                generation[field.name] = value_of(field, values[("generation", field.name)])
            return values[("model",)] or "", values[("adapters",)] or "", generation

        def command_line(*args: Any) -> str:
            return _command_text(lambda: self.line(commands.chat_argv(*parts(args))))

        self._on_change(gr, inputs, command_line, line)

        def respond(text: str, past: list[dict[str, str]], *args: Any) -> Iterator[list[Any]]:
            if not text.strip():
                yield [gr.skip(), gr.skip(), gr.skip(), gr.skip()]
                return
            messages = [*past, {"role": "user", "content": text}]
            yield [
                messages,
                messages,
                "",
                '<div class="martlet-status">loading the model and answering ...</div>',
            ]
            try:
                model, adapters, generation = parts(args)
                answer = ""
                for answer in self.chat.stream(model, adapters, messages, generation):
                    shown = [*messages, {"role": "assistant", "content": answer}]
                    yield [shown, gr.skip(), gr.skip(), gr.skip()]
            except MartletError as exc:
                yield [messages, messages, gr.skip(), error_html(exc)]
                return
            done = [*messages, {"role": "assistant", "content": answer}]
            what = adapters or model
            yield [
                done,
                done,
                gr.skip(),
                f'<div class="martlet-status">answered by {html.escape(what)}</div>',
            ]

        outputs = [bot, history, message, status]
        events = [
            trigger(
                respond,
                inputs=[message, history, *inputs.components],
                outputs=outputs,
                show_progress="hidden",
            )
            for trigger in (send.click, message.submit)
        ]
        stop.click(None, cancels=events)
        clear.click(lambda: [[], [], ""], outputs=[bot, history, status], queue=False)

        return Tab(inputs.components, command_line, [line])

    # -------------------------------------------------------------------- evaluate

    def _eval_tab(self, gr: Any, tab: Any) -> Tab | None:
        import pandas as pd

        if not catalog.has_command("eval"):
            gr.Markdown("`martlet eval` is not installed: `pip install martlet-eval` brings it.")
            return None
        cls = commands.config_class("eval")
        listed = catalog.eval_tasks(commands.runnable(self.line([commands.MARTLET])), self.root)
        choices = [
            (t["name"] + (" (offline)" if t.get("offline") else ""), t["name"]) for t in listed
        ]
        # offline tasks first, multiple-choice ones (scored without generating) first of those
        offline = [
            t["name"]
            for t in sorted(listed, key=lambda t: t.get("kind") != "multiple_choice")
            if t.get("offline")
        ]
        inputs = Inputs("eval")
        self._model_or_run(gr, tab, inputs, "A run directory: its base model with what it trained.")
        with gr.Row():
            tasks = inputs.add(
                ("tasks",),
                gr.Dropdown(
                    choices,
                    value=offline[:1],
                    multiselect=True,
                    allow_custom_value=True,
                    label="--tasks",
                    info="Installed tasks (offline: need no download), or YAML task files.",
                    elem_id="eval-tasks",
                ),
            )
            inputs.add(
                ("output_dir",),
                self._output_dir(
                    gr, "eval", "Where results.json and samples.jsonl go.", "eval-output"
                ),
            )
        _fields(gr, inputs, ("main",), fields_of(cls, names=commands.MAIN_EVAL))
        task_groups = commands.eval_task_groups()
        shown = [self._option_group(gr, inputs, og, og.selected(offline[:1])) for og in task_groups]

        def form(values: Mapping[tuple[str, ...], Any]) -> commands.EvalForm:
            chosen = list(values[("tasks",)] or [])
            return commands.EvalForm(
                model=values[("model",)] or "",
                adapters=values[("adapters",)] or "",
                tasks=chosen,
                output_dir=values[("output_dir",)] or "",
                options={k[1]: v for k, v in values.items() if k[0] == "main"},
                task_options=_chosen_options(task_groups, chosen, values),
                extra=values[MORE_FLAGS] or "",
            )

        def scores(evaluation: commands.EvalForm) -> Shown:
            rows = score_rows(self.root / evaluation.output_dir)
            return Shown(
                f" · <code>{html.escape(evaluation.output_dir)}/results.json</code>",
                pd.DataFrame(rows, columns=SCORE_COLUMNS),
            )

        self._show_chosen(gr, tasks, lambda chosen: chosen or [], task_groups, shown)

        return self._command_tab(
            gr,
            CommandTab(
                name="eval",
                button="Evaluate",
                more_flags="Any other option of `martlet eval`.",
                inputs=inputs,
                form=form,
                argv=commands.eval_argv,
                result=lambda: self._table(gr, SCORE_COLUMNS, "scores", "eval-scores"),
                show=when_done(scores),
            ),
        )

    # ---------------------------------------------------------------------- export

    def _export_tab(self, gr: Any, tab: Any) -> Tab | None:
        import pandas as pd
        from martlet.config import specs

        if not catalog.has_command("export"):
            gr.Markdown(
                "`martlet export` is not installed: `pip install martlet-export` brings it."
            )
            return None
        cls = commands.config_class("export")
        own = specs(cls)
        inputs = Inputs("export")
        with gr.Row():
            inputs.add(
                ("adapters",),
                self._run_list(gr, tab, "The run directory to export.", "export-run"),
            )
            inputs.add(
                ("output_dir",),
                self._output_dir(
                    gr,
                    "export",
                    "Where the exported model goes (a folder of its own).",
                    "export-output",
                ),
            )
        with gr.Row():
            inputs.add(
                ("merge_lora",),
                gr.Checkbox(
                    True,
                    label="--merge-lora",
                    info=own["merge_lora"].help if "merge_lora" in own else None,
                    elem_id="export-merge",
                ),
            )
            quantizers = commands.export_quantizers()
            quant = inputs.add(
                ("quant_method",),
                gr.Dropdown(
                    [("(none)", ""), *[(q, q) for q in quantizers]],
                    value="",
                    label="--quant-method",
                    elem_id="export-quant",
                    info="Quantize while exporting (the quantizers that export); its own options "
                    "appear below.",
                ),
            )
        _fields(gr, inputs, ("main",), fields_of(cls, names=commands.MAIN_EXPORT))
        quant_groups = commands.export_quant_groups()
        shown = [self._option_group(gr, inputs, og, False) for og in quant_groups]

        def form(values: Mapping[tuple[str, ...], Any]) -> commands.ExportForm:
            method = values[("quant_method",)] or ""
            return commands.ExportForm(
                adapters=values[("adapters",)] or "",
                output_dir=values[("output_dir",)] or "",
                merge_lora=bool(values[("merge_lora",)]),
                quant_method=method,
                options={k[1]: v for k, v in values.items() if k[0] == "main"},
                quant_options=_chosen_options(quant_groups, [method], values),
                extra=values[MORE_FLAGS] or "",
            )

        def files(export: commands.ExportForm) -> Shown:
            return Shown(
                f" · written to <code>{html.escape(export.output_dir)}</code>",
                pd.DataFrame(written(self.root / export.output_dir), columns=FILE_COLUMNS),
            )

        self._show_chosen(gr, quant, lambda q: [q or ""], quant_groups, shown)

        return self._command_tab(
            gr,
            CommandTab(
                name="export",
                button="Export",
                more_flags="Any other option of `martlet export`.",
                inputs=inputs,
                form=form,
                argv=commands.export_argv,
                result=lambda: self._table(gr, FILE_COLUMNS, "written", "export-files"),
                show=when_done(files),
            ),
        )


def score_rows(out: str | Path) -> list[tuple[str, str, Any]]:
    """``(task, metric, value)`` rows of ``OUT/results.json`` (``martlet eval``'s output: a
    ``results`` object of tasks, each an object of metrics; values that are no number, such
    as a task's kind, are left out).

    Raises:
        MartletError: the file is missing or not in that shape.
    """
    path = Path(out) / "results.json"
    try:
        results = json.loads(path.read_text(encoding="utf-8"))["results"]
        rows = [
            (str(task), str(metric), value)
            for task, metrics in results.items()
            for metric, value in metrics.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool)
        ]
    except (OSError, ValueError, KeyError, AttributeError, TypeError) as exc:
        raise MartletError(
            f"no scores in {path}",
            why=f"{type(exc).__name__}: {exc}",
            fix="see the log above: `martlet eval` writes results.json when it finishes",
        ) from exc
    return rows


def written(out: str | Path) -> list[tuple[str, int]]:
    """``(file, bytes)`` of what a folder holds (paths relative to it), sorted."""
    base = Path(out)
    return sorted(
        (str(p.relative_to(base)), p.stat().st_size) for p in base.rglob("*") if p.is_file()
    )


def launch(
    host: str = "127.0.0.1",
    port: int = 7860,
    *,
    root: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    output: str = "output",
) -> None:
    """Serve the UI on ``host:port`` until interrupted (no share link: it is local)."""
    demo = WebUI(root, env=env, output=output).build()
    gr = _gradio()
    demo.queue().launch(
        server_name=host,
        server_port=port,
        share=False,
        inbrowser=False,
        show_error=True,
        ssr_mode=False,
        mcp_server=False,
        pwa=False,
        theme=gr.themes.Default(),
        css=CSS,
    )


CSS = """
.martlet-error { border-left: 4px solid #d33; padding: 6px 10px; background: #fff3f3; }
.martlet-error pre { white-space: pre-wrap; margin: 4px 0; }
.martlet-status progress { width: 240px; vertical-align: middle; }
"""
