"""``martlet infer``: terminal chat, one answer (``--query``), or batch inference (``--input``)."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from martlet.cli import config_command
from martlet.config import option
from martlet.errors import ConfigError
from martlet_hf.options import ModelOptions, TemplateOptions


@dataclass(kw_only=True)
class InferConfig(ModelOptions, TemplateOptions):
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
    infer_backend: str = option("pt", help="The inference engine.", aliases=("backend",))
    query: str | None = option(None, help="Answer this one question and print only the answer.")
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
        None, help="Serve an OpenAI-compatible API on this port (with `martlet deploy`)."
    )

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


@config_command(InferConfig, name="infer")
def infer(config: InferConfig) -> None:
    """Chat with a model (streamed), answer --query, or answer every row of --input."""
    if config.port is not None:
        raise ConfigError(
            "serving on --port is not available yet",
            why="the OpenAI-compatible server arrives with `martlet deploy`",
            fix="drop --port to chat in the terminal, or use --query / --input",
        )
    if config.output and not config.input:
        raise ConfigError("--output needs --input", fix="pass --input ROWS.jsonl")
    engine = load_engine(config)
    if config.query is not None:
        answer = engine.generate([[_user(config.query)]], **config.generation())[0]
        click.echo(answer.text)
    elif config.input:
        batch(engine, config)
    else:
        chat(engine, config)


def load_engine(config: InferConfig) -> Any:
    """The inference engine for the model or run of ``config``.

    The system prompt (``--system``, or the run's) is the template's business."""
    import martlet
    from martlet.manager import get_manager
    from martlet.runs import load_run

    backend = get_manager().registry.get("inference_backends", config.infer_backend)
    template_name, options = config.template, config.template_options()
    options["max_length"] = None  # prompts are not truncated for inference
    if config.adapters:
        model, tokenizer, run = load_run(config.adapters, **config.loader_options())
        template_name = template_name or run.template
        if config.system is None:
            options.update(run.template_options())
    elif config.model:
        model, tokenizer = martlet.load_model(config.model, **config.loader_options())
    else:
        raise ConfigError("no model to run", fix="pass --model ID_OR_PATH or --adapters RUN_DIR")
    template = martlet.load_template(tokenizer, template_name, **options)
    return backend.load()(model, tokenizer, template=template)


def _user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def batch(engine: Any, config: InferConfig) -> Path | None:
    """Answer every row of ``--input``; write JSON Lines to ``--output`` (or stdout)."""
    import martlet
    from tqdm.auto import tqdm

    rows = list(martlet.load_dataset(config.input, prompts=True))
    requests = [
        [{k: m[k] for k in ("role", "content") if k in m} for m in row["messages"]] for row in rows
    ]
    references = [row.get("reference") for row in rows]
    out = open(config.output, "w", encoding="utf-8") if config.output else sys.stdout  # noqa: SIM115
    try:
        with tqdm(total=len(requests), desc="infer", unit="row", file=sys.stderr) as progress:
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
    finally:
        if out is not sys.stdout:
            out.close()
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
