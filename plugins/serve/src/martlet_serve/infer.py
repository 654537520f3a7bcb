"""``martlet infer``: terminal chat, one answer (``--query``), or batch inference (``--input``).

``--task reward`` scores conversations with a reward model (a sequence classification model:
``--task-type seq_cls``, or a run directory that trained one) instead of answering them: the
value of its scalar head at the conversation's last token, encoded as in training.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import click
from martlet.cli import config_command
from martlet.config import option
from martlet.errors import ConfigError
from martlet.options import ModelOptions, QuantizeOptions, TemplateOptions

from martlet_serve.deploy import ServerOptions

#: device_map values that spread the layers over whatever devices there are
_SPREAD = ("auto", "balanced", "balanced_low_0", "sequential")


@dataclass(kw_only=True)
class InferConfig(ModelOptions, QuantizeOptions, TemplateOptions, ServerOptions):
    model: str | None = option(
        None,
        help="A model id, folder or .gguf file (not needed with --adapters).",
        aliases=("model_type", "model_id_or_path"),
        metavar="ID_OR_PATH",
    )
    adapters: str | None = option(
        None,
        help="A training run directory (or checkpoint): the base model, tuner, template "
        "and system prompt come from its config.yaml.",
        aliases=("ckpt_dir", "adapter"),
    )
    device: str | None = option(
        None,
        help="The accelerator to run on: NAME[:INDEX] (cpu, cuda:1, a plugin's device; "
        "default: the CPU, or where --device-map puts the layers).",
    )
    infer_backend: str = option(
        "pt",
        help="The inference engine (`martlet infer --infer-backend NAME --help` shows its "
        "options).",
        aliases=("backend",),
        names_of="inference_backends",
    )
    task: Literal["generate", "reward", "seq_cls"] = option(
        "generate",
        help="What to do: generate answers, or score conversations with a reward model "
        "(reward; seq_cls is another name): --query [--response] prints one score, rows of "
        "--input get theirs.",
    )
    query: str | None = option(
        None,
        help="Answer this one question and print only the answer (with --task reward: score it).",
    )
    response: str | None = option(
        None, help="With --task reward and --query: the answer to score (default: none)."
    )
    input: str | None = option(
        None,
        help="Batch inference over these rows (any dataset spec: a .jsonl file, a name).",
        aliases=("val_dataset", "infer_dataset"),
    )
    output: str | None = option(
        None, help="Where batch answers go (JSON Lines).", aliases=("result_path",)
    )
    max_new_tokens: int = option(512, help="Most tokens to generate per answer.")
    temperature: float = option(0.0, help="Sampling temperature; 0 is greedy decoding.")
    top_p: float = option(1.0, help="Nucleus sampling: keep the smallest set with this mass.")
    top_k: int = option(0, help="Sample from the K most likely tokens (0: off).")
    repetition_penalty: float = option(1.0, help="Penalise repeating tokens (1.0: off).")
    stop: list[str] = option(
        default_factory=list, help="Stop at any of these strings.", aliases=("stop_words",)
    )
    seed: int | None = option(None, help="Seed for sampling.")
    max_batch_size: int = option(8, help="Prompts generated together in batch inference.")
    stream: bool = option(True, help="Stream tokens in the chat as they are generated.")
    port: int | None = option(
        None,
        help="Serve an OpenAI-compatible API on this port instead, as `martlet deploy` does "
        "(0: any free port); the server's options below apply.",
    )

    def __post_init__(self) -> None:
        if self.task == "seq_cls":
            self.task = "reward"
        parent = getattr(super(), "__post_init__", None)
        if parent is not None:
            parent()

    def loader_options(self) -> dict[str, Any]:
        """The model's loader options, ``--torch-dtype auto`` resolved for inference on the
        device the weights go to: its native half dtype where it has one, else float32;
        with ``--quant-method``, quantized as it loads."""
        options = {**super().loader_options(), **self.quant_options()}
        if self.device:
            from martlet.devices import place
            from martlet.precision import resolve

            if self.device_map is not None:
                raise ConfigError(
                    "--device and --device-map both say where the model goes",
                    fix="pass one of them: --device for one device, --device-map to spread it",
                )
            placement = place(self.device)
            options["device_map"] = placement.torch_device
            if options.get("torch_dtype") in ("auto", None):
                options["torch_dtype"] = resolve(device=placement.spec, inference=True).torch_dtype
            return options
        if options.get("torch_dtype") in ("auto", None):
            from martlet.precision import resolve

            target = self.device_map
            device = "cpu" if target is None else None  # the loader's default: one CPU
            kind = str(target).strip().split(":")[0]
            if target is not None and not kind.startswith("{") and kind not in _SPREAD:
                device = "cuda" if kind.isdigit() else kind
            options["torch_dtype"] = resolve(device=device, inference=True).torch_dtype
        return options

    def generation(self) -> dict[str, Any]:
        return dict(
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            repetition_penalty=self.repetition_penalty,
            stop=list(self.stop),
            seed=self.seed,
        )


def check_infer(config: InferConfig) -> None:
    """The values and names ``infer`` can check before the model loads (it takes seconds)."""
    from martlet.config import require
    from martlet.manager import get_manager

    require(config.temperature >= 0, "temperature", config.temperature, "at least 0", "0.7")
    require(0 < config.top_p <= 1, "top-p", config.top_p, "in (0, 1]", "0.9")
    require(config.top_k >= 0, "top-k", config.top_k, "at least 0", "50")
    require(
        config.max_new_tokens >= 1, "max-new-tokens", config.max_new_tokens, "at least 1", "256"
    )
    require(
        config.repetition_penalty > 0,
        "repetition-penalty",
        config.repetition_penalty,
        "more than 0",
        "1.1",
    )
    require(config.max_batch_size >= 1, "max-batch-size", config.max_batch_size, "at least 1", "8")
    if config.template:  # a misspelt name fails now, with suggestions
        get_manager().registry.get("templates", config.template)
    if config.model_loader and config.model_loader != "auto":
        get_manager().registry.get("model_loaders", config.model_loader)
    _check_port(config)


#: infer's own options that only the terminal, --query and --input use
_LOCAL = ("query", "response", "input", "output", "task", "stream")
_GENERATION = (
    "max_new_tokens",
    "temperature",
    "top_p",
    "top_k",
    "repetition_penalty",
    "stop",
    "seed",
)


def _changed(config: Any, names: Iterable[str]) -> list[str]:
    from martlet.config import specs

    defaults = specs(InferConfig)
    return [n for n in names if getattr(config, n) != defaults[n].default]


def _check_port(config: InferConfig) -> None:
    """--port serves instead of answering here: infer's own options for answering do not
    apply to it, nor do the server's options without it."""
    import dataclasses

    if config.port is None:
        server = _changed(config, [f.name for f in dataclasses.fields(ServerOptions)])
        if server:
            flag = "--" + server[0].replace("_", "-")
            raise ConfigError(
                f"{flag} is an option of the server",
                why="without --port, infer answers here and serves nothing",
                fix=f"add --port PORT to serve (or use `martlet deploy`), or drop {flag}",
            )
        return
    refused = _changed(config, _LOCAL + _GENERATION)
    if refused:
        flag = "--" + refused[0].replace("_", "-")
        raise ConfigError(
            f"{flag} does not apply with --port",
            why="the server answers each request with the sampling settings it carries",
            fix=f"drop {flag}, or drop --port to answer here",
        )


def serve_here(config: InferConfig) -> None:
    """``infer --port``: the same server as ``martlet deploy``, on the model or run of
    ``config`` (``--max-batch-size`` is the engine's batch)."""
    from martlet_serve.deploy import config_from, serve

    serve(config_from(deploy_values(config)))


def deploy_values(config: InferConfig) -> dict[str, Any]:
    """The ``martlet deploy`` options that serve the model or run of ``config`` as it would
    answer (``--max-batch-size`` is the engine's batch)."""
    import dataclasses

    from martlet_serve.deploy import fields_of

    own = {f.name for f in dataclasses.fields(InferConfig)} - {
        f.name for f in dataclasses.fields(ModelOptions)
    }
    own -= {f.name for f in dataclasses.fields(TemplateOptions)}
    own -= {f.name for f in dataclasses.fields(QuantizeOptions)}
    own -= {f.name for f in dataclasses.fields(ServerOptions)}
    values = {k: v for k, v in fields_of(config).items() if k not in own}
    values.update(
        model=config.adapters or config.model,
        port=config.port,
        device=config.device,
        infer_backend=config.infer_backend,
        max_batch_size=config.max_batch_size,
    )
    return values


@config_command(InferConfig, name="infer", check=check_infer)
def infer(config: InferConfig) -> None:
    """Chat with a model (streamed), answer --query, or answer every row of --input."""
    if config.port is not None:
        serve_here(config)
        return
    if config.output and not config.input:
        raise ConfigError("--output needs --input", fix="pass --input ROWS.jsonl")
    if config.output:
        check_output(config.output)  # before the model loads: that takes a while
    if config.response is not None and config.query is None:
        raise ConfigError("--response needs --query", fix="pass --query TEXT --response TEXT")
    if config.task == "reward" or config.task_type == "seq_cls" or _run_is_reward(config):
        reward(config)
        return
    if config.response is not None:
        raise ConfigError(
            "--response is for scoring an answer",
            fix="add --task reward with a reward model, or drop --response",
        )
    rows = None
    if config.query is None and config.input:  # read before the model loads: a bad file fails fast
        import martlet

        rows = list(martlet.load_dataset(config.input, prompts=True))
    # stdout carries the answers only: what libraries print while the model and adapters load
    # goes to stderr (PEFT imports gptqmodel wherever it is installed; its banner is printed
    # to stdout, and its logger writes a newline there at exit unless imported this way)
    with contextlib.redirect_stdout(sys.stderr):
        engine = load_engine(config)
    try:
        if config.query is not None:
            answer = engine.generate([[_user(config.query)]], **config.generation())[0]
            click.echo(answer.text)
        elif config.input:
            batch(engine, config, rows)
        else:
            chat(engine, config)
    finally:
        close = getattr(engine, "close", None)
        if close is not None:
            close()


def load_engine(config: InferConfig) -> Any:
    """The inference engine for the model or run of ``config``.

    The system prompt (``--system``, or the run's) is the template's business."""
    import martlet
    from martlet.compose import chosen_options
    from martlet.manager import get_manager
    from martlet.runs import load_run

    backend = get_manager().registry.get("inference_backends", config.infer_backend)
    if "batch" not in backend.capabilities:  # a serving engine only (vLLM, SGLang, ...)
        if "serve" not in backend.capabilities:
            raise ConfigError(
                f"--infer-backend {backend.name} can neither generate in-process nor serve",
                fix="choose another --infer-backend (martlet plugins --kind inference_backends)",
            )
        from martlet_serve.api import InferEngine
        from martlet_serve.served import ServedGenerator

        values = deploy_values(config)
        values.pop("port", None)
        return ServedGenerator(InferEngine(**values))
    template_name, options = config.template, config.template_options()
    options["max_length"] = None  # prompts are not truncated for inference
    if config.adapters:
        model, tokenizer, run = load_run(config.adapters, **config.loader_options())
        template_name, options = run.answered_with(config.template, options, config.system)
    elif config.model:
        model, tokenizer = martlet.load_model(config.model, **config.loader_options())
    else:
        raise ConfigError("no model to run", fix="pass --model ID_OR_PATH or --adapters RUN_DIR")
    template = martlet.load_template(tokenizer, template_name, **options)
    return backend.load()(
        model, tokenizer, template=template, **chosen_options(config, "infer_backend")
    )


# ---------------------------------------------------------------------- rewards


def _run_task_type(run: Any) -> str:
    from martlet.tasks import check_task_type

    return check_task_type(run.config.get("task_type") or "causal_lm")


def _run_is_reward(config: InferConfig) -> bool:
    """Whether ``--adapters`` is a run that trained a reward (seq_cls) model."""
    if not config.adapters:
        return False
    from martlet.runs import read_run

    return _run_task_type(read_run(config.adapters)) == "seq_cls"


def load_reward_model(config: InferConfig) -> tuple[Any, Any, Any]:
    """``(model, tokenizer, template)`` for scoring: the model loaded with ``task_type='seq_cls'``
    and, for ``--adapters``, the run's trained result applied (by its tuner's ``load``), with
    the run's template and system prompt.

    Raises:
        ConfigError: ``--adapters`` names a run that trained a language model, or no model.
    """
    import martlet

    template_name, options = config.template, config.template_options()
    options["max_length"] = None  # conversations are scored whole
    load_options = {**config.loader_options(), "task_type": "seq_cls"}
    if config.adapters:
        from martlet.runs import load_run, read_run

        run = read_run(config.adapters)
        if _run_task_type(run) != "seq_cls":
            raise ConfigError(
                f"{config.adapters} trained a language model, not a reward model",
                why="its config.yaml has no `task_type: seq_cls`, so it has no trained score head",
                fix="pass the run directory of `martlet rlhf --method rm`, or drop --task reward",
            )
        if config.num_labels == 1 and run.config.get("num_labels"):
            load_options["num_labels"] = int(run.config["num_labels"])
        model, tokenizer, run = load_run(config.adapters, **load_options)
        template_name, options = run.answered_with(config.template, options, config.system)
    elif config.model:
        model, tokenizer = martlet.load_model(config.model, **load_options)
        architectures = getattr(model.config, "architectures", None) or []
        if not any(str(a).endswith("ForSequenceClassification") for a in architectures):
            click.echo(
                f"martlet: warning: {config.model} has no trained score head (it is a "
                f"{', '.join(architectures) or 'plain'} model); its scores are random",
                err=True,
            )
    else:
        raise ConfigError("no model to run", fix="pass --model ID_OR_PATH or --adapters RUN_DIR")
    template = martlet.load_template(tokenizer, template_name, **options)
    return model.eval(), tokenizer, template


def score_conversations(
    model: Any,
    tokenizer: Any,
    template: Any,
    conversations: list[list[dict]],
    batch_size: int,
    tools: list[Any] | None = None,
) -> list[Any]:
    """The reward of each conversation (a float, or a list for a head of several outputs),
    encoded with ``template.encode`` (with its ``tools``, if any) as in training and scored in
    batches of ``batch_size``, right-padded."""
    import torch
    from martlet.heads import sequence_scores

    tok = getattr(tokenizer, "tokenizer", None) or tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else model.config.pad_token_id
    if pad is None:
        pad = tok.eos_token_id
    device = next(model.parameters()).device
    tools = tools or [None] * len(conversations)
    encoded = [
        (template.encode(m, tools=t) if t else template.encode(m))["input_ids"]
        for m, t in zip(conversations, tools, strict=True)
    ]
    results: list[Any] = []
    for start in range(0, len(encoded), max(1, batch_size)):
        chunk = encoded[start : start + max(1, batch_size)]
        width = max(len(ids) for ids in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for i, row in enumerate(chunk):
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        with torch.no_grad():
            scores = sequence_scores(model, ids.to(device), mask.to(device))
        results.extend(scores.float().cpu().tolist())
    return results


def reward(config: InferConfig) -> None:
    """``--task reward``: print the score of ``--query`` [``--response``], or score every row
    of ``--input``."""
    if config.query is None and not config.input:
        raise ConfigError(
            "--task reward needs conversations to score",
            why="a reward model scores answers; it has no interactive chat",
            fix="pass --query TEXT [--response TEXT], or --input ROWS.jsonl [--output OUT.jsonl]",
        )
    rows = None
    if config.query is None:  # the rows are read (a missing file fails) before the model loads
        import martlet

        rows = martlet.load_dataset(config.input)
    model, tokenizer, template = load_reward_model(config)
    if config.query is not None:
        messages = [_user(config.query)]
        if config.response is not None:
            messages.append({"role": "assistant", "content": config.response})
        (value,) = score_conversations(model, tokenizer, template, [messages], 1)
        click.echo(json.dumps(value))
        return
    reward_batch(model, tokenizer, template, config, rows)


def _rejected(row: dict[str, Any]) -> list[dict] | None:
    if "rejected_messages" in row:
        return list(row["rejected_messages"])
    if "rejected_response" in row:
        return [*row["messages"][:-1], {"role": "assistant", "content": row["rejected_response"]}]
    return None


def reward_batch(
    model: Any, tokenizer: Any, template: Any, config: InferConfig, rows: Any = None
) -> Path | None:
    """Score every row of ``--input`` (or of ``rows``, its rows read already): conversation
    rows get ``reward``, preference rows ``chosen_reward`` and ``rejected_reward``; JSON Lines
    to ``--output`` (or stdout)."""
    import martlet
    from tqdm.auto import tqdm

    size = max(1, config.max_batch_size)
    if rows is None:
        rows = martlet.load_dataset(config.input)
    rows = _conversation_rows(rows, config.input)
    count = 0
    with _output(config.output) as out, tqdm(desc="reward", unit="row", file=sys.stderr) as bar:
        while chunk := list(itertools.islice(rows, size)):
            _score_rows(model, tokenizer, template, chunk, size, out)
            count += len(chunk)
            bar.update(len(chunk))
    if config.output:
        click.echo(f"wrote {count} scored rows to {config.output}", err=True)
        return Path(config.output)
    return None


def _conversation_rows(rows: Iterable[Any], source: str) -> Iterator[dict[str, Any]]:
    """The rows to score, each checked to hold a conversation."""
    for number, row in enumerate(rows, 1):
        if "messages" not in row:
            raise ConfigError(
                f"row {number} of {source} has no conversation to score",
                why="plain text rows have no turns",
                fix="give conversation rows (messages, query/response, ...) or "
                "preference rows (chosen/rejected)",
            )
        yield dict(row)


def check_output(path: str) -> None:
    """Check that JSON Lines can be written to ``path``, creating nothing: it is not a folder,
    its first existing parent is a folder, and that (or the file itself) is writable.

    Raises:
        ConfigError: naming ``--output`` and what is wrong with it.
    """
    from martlet.paths import nearest_existing, write_error

    file = Path(path).expanduser()
    if file.is_dir():
        raise ConfigError(
            f"--output {path} is a folder",
            why="the answers are written to one JSON Lines file",
            fix=f"give a file path, e.g. --output {file / 'answers.jsonl'}",
        )
    where = nearest_existing(file)
    if where != file and not where.is_dir():
        raise ConfigError(
            f"cannot write --output {path}",
            why=f"{where} is a file, not a folder",
            fix="give an --output path whose parent folders are folders",
        )
    try:
        if where == file:
            open(file, "a", encoding="utf-8").close()  # appends nothing
        elif (error := write_error(where)) is not None:
            raise error
    except OSError as exc:
        raise ConfigError(
            f"cannot write --output {path}",
            why=f"{where} is not writable ({exc.strerror or exc})",
            fix="give an --output path in a folder you can write to",
            cause=exc,
        ) from exc


@contextlib.contextmanager
def _output(path: str | None) -> Iterator[Any]:
    """Where JSON Lines go: the file at ``path`` (closed at the end; missing parent folders
    are created), else stdout."""
    if not path:
        yield sys.stdout
        return
    file = Path(path).expanduser()
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        out = open(file, "w", encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise ConfigError(
            f"cannot write --output {path}",
            why=f"{type(exc).__name__}: {exc.strerror or exc}",
            fix="give an --output path in a folder you can write to",
            cause=exc,
        ) from exc
    with out:
        yield out


def _score_rows(
    model: Any, tokenizer: Any, template: Any, rows: list[dict], size: int, out: Any
) -> None:
    conversations: list[list[dict]] = []
    tools: list[Any] = []
    for row in rows:
        for messages in (row["messages"], _rejected(row)):
            if messages is not None:
                conversations.append(list(messages))
                tools.append(row.get("tools"))
    scores = iter(score_conversations(model, tokenizer, template, conversations, size, tools))
    for row in rows:
        record = dict(row)
        if _rejected(row) is not None:
            record["chosen_reward"] = next(scores)
            record["rejected_reward"] = next(scores)
        else:
            record["reward"] = next(scores)
        out.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
    out.flush()


# ---------------------------------------------------------------------- chat


def _user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def batch(engine: Any, config: InferConfig, rows: list[dict] | None = None) -> Path | None:
    """Answer every row of ``--input`` (or ``rows``, its rows read already); write JSON Lines
    to ``--output`` (or stdout)."""
    import martlet
    from tqdm.auto import tqdm

    if rows is None:
        rows = list(martlet.load_dataset(config.input, prompts=True))
    requests = [
        [{k: m[k] for k in ("role", "content") if k in m} for m in row["messages"]] for row in rows
    ]
    references = [row.get("reference") for row in rows]
    with (
        _output(config.output) as out,
        tqdm(total=len(requests), desc="infer", unit="row", file=sys.stderr) as progress,
    ):
        for start in range(0, len(requests), config.max_batch_size):
            chunk = requests[start : start + config.max_batch_size]
            answers = engine.generate(chunk, **config.generation())
            for offset, (messages, answer) in enumerate(zip(chunk, answers, strict=True)):
                record: dict[str, Any] = {
                    "messages": messages,
                    "response": answer.text,
                    "finish_reason": answer.finish_reason,
                }
                if references[start + offset] is not None:
                    record["reference"] = references[start + offset]
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
            out.flush()
            progress.update(len(chunk))
    if config.output:
        click.echo(f"wrote {len(requests)} answers to {config.output}", err=True)
        return Path(config.output)
    return None


def chat(engine: Any, config: InferConfig) -> None:
    """A multi-turn chat on the terminal: answers stream as they are generated."""
    history: list[dict[str, str]] = []
    click.echo("chat: /clear forgets the conversation, /exit (or Ctrl-D) leaves", err=True)
    while True:
        try:
            text = input("<<< ")
        except (EOFError, KeyboardInterrupt):
            click.echo("", err=True)
            return
        command = text.strip()
        if command in ("/exit", "/quit"):
            return
        if command == "/clear":
            history = []
            click.echo("(conversation cleared)", err=True)
            continue
        if not command:
            continue
        history.append(_user(text))
        click.echo(">>> ", nl=False)
        if config.stream:
            pieces = []
            for piece in engine.stream(history, **config.generation()):
                pieces.append(piece)
                click.echo(piece, nl=False)
            answer = "".join(pieces)
        else:
            answer = engine.generate([history], **config.generation())[0].text
            click.echo(answer, nl=False)
        click.echo("")
        history.append({"role": "assistant", "content": answer})
