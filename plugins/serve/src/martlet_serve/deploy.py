"""``martlet deploy``: serve a model (or a training run, with named LoRA adapters beside it)
behind an OpenAI-compatible HTTP API.

The options are one dataclass (:class:`DeployConfig`), so flags, ``--config FILE`` and
``--print-config`` work as for every command; ``--infer-backend`` selects an inference backend
record claiming ``serve`` and takes its own options (``martlet deploy --infer-backend NAME
--help`` lists them). The server binds first and loads the model in the background (``/health``
answers 503 until it is ready), prints the URL and example calls when ready, and on SIGTERM or
Ctrl-C stops taking requests, finishes those in flight and exits 0.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from martlet.cli import config_command
from martlet.config import option, require
from martlet.errors import ConfigError, MartletError
from martlet.options import ModelOptions, QuantizeOptions, TemplateOptions

API_KEY_ENV = "MARTLET_API_KEY"
JWT_SECRET_ENV = "MARTLET_JWT_SECRET"


@dataclass(kw_only=True)
class ServerOptions:
    """How the OpenAI-compatible server listens, whom it answers and what it accepts."""

    host: str = option(
        "127.0.0.1",
        help="The address to listen on; 0.0.0.0 answers every network (then set --api-key).",
    )
    api_key: str | None = option(
        None,
        help=f"Require 'Authorization: Bearer KEY' on every route but /health (default: "
        f"${API_KEY_ENV}, else none).",
    )
    jwt_secret: str | None = option(
        None,
        help=f"Also accept JWTs signed with this HMAC secret (HS256; at least 32 bytes; "
        f"default: ${JWT_SECRET_ENV}).",
    )
    jwt_public_key: str | None = option(
        None,
        help="Also accept JWTs signed for this PEM public key (RS256, ES256, ...).",
        metavar="FILE",
    )
    jwt_audience: str | None = option(
        None, help="With JWTs: require this audience (aud); tokens naming another are refused."
    )
    served_model_name: str | None = option(
        None,
        help="The name clients put in `model` for the base model (default: --model as given).",
    )
    max_model_len: int | None = option(
        None, help="Most tokens per request, prompt and answer (default: the model's context)."
    )
    max_queued_requests: int | None = option(
        None,
        help="Requests that may wait for a batch slot; more are answered 429 (default: the "
        "backend's, 256 for pt).",
    )
    max_tokens_limit: int = option(4096, help="The largest max_tokens a request may ask for.")
    max_n: int = option(16, help="The largest n (choices per request).")
    max_top_logprobs: int = option(
        20, help="The largest top_logprobs (chat) or logprobs (completions)."
    )
    max_body_bytes: int = option(
        4 * 1024 * 1024, help="The largest request body; larger ones are answered 413."
    )

    def check_server(self) -> None:
        """The server options' values (no model needed)."""
        require(bool(str(self.host).strip()), "host", self.host, "an address", "127.0.0.1")
        for name, value, least, example in (
            ("max-tokens-limit", self.max_tokens_limit, 1, "4096"),
            ("max-n", self.max_n, 1, "16"),
            ("max-top-logprobs", self.max_top_logprobs, 0, "20"),
            ("max-body-bytes", self.max_body_bytes, 1024, "4194304"),
        ):
            require(value >= least, name, value, f"at least {least}", example)
        if self.max_model_len is not None:
            require(
                self.max_model_len >= 2, "max-model-len", self.max_model_len, "at least 2", "4096"
            )
        if self.max_queued_requests is not None:
            require(
                self.max_queued_requests >= 0,
                "max-queued-requests",
                self.max_queued_requests,
                "0 or more",
                "256",
            )

    def authenticator(self) -> Any:
        """The server's :class:`~martlet_serve.auth.Authenticator` (keys from the environment
        where the flags give none)."""
        from martlet_serve.auth import Authenticator

        return Authenticator(
            self.api_key if self.api_key is not None else os.environ.get(API_KEY_ENV) or None,
            jwt_secret=self.jwt_secret or os.environ.get(JWT_SECRET_ENV) or None,
            jwt_public_key=self.jwt_public_key,
            jwt_audience=self.jwt_audience,
        )

    def limits(self) -> Any:
        from martlet_serve.service import Limits

        return Limits(
            max_tokens=self.max_tokens_limit,
            max_n=self.max_n,
            max_top_logprobs=self.max_top_logprobs,
        )


@dataclass(kw_only=True)
class DeployConfig(ModelOptions, QuantizeOptions, TemplateOptions, ServerOptions):
    model: str = option(
        help="What to serve: a model id (`martlet model list`), a folder, a .gguf file, or a "
        "training run directory (its base model with what it trained, template and system "
        "prompt).",
        aliases=("model_type", "model_id_or_path"),
        metavar="ID_OR_PATH",
    )
    adapters: list[str] = option(
        default_factory=list,
        help="LoRA adapters served beside the model, each NAME=DIR (a PEFT adapter folder or "
        "a LoRA run directory; DIR alone is named after its folder); clients choose one "
        "with `model`.",
        metavar="NAME=DIR",
        aliases=("lora_modules",),
    )
    infer_backend: str = option(
        "pt",
        help="The inference backend that decodes (it must claim `serve`; `martlet deploy "
        "--infer-backend NAME --help` shows its options).",
        aliases=("backend",),
        names_of="inference_backends",
    )
    device: str | None = option(
        None,
        help="The accelerator to run on: NAME[:INDEX] (cpu, cuda:1; default: the backend's "
        "choice).",
    )
    port: int = option(8000, help="The port to listen on (0: any free port, printed).")
    max_batch_size: int | None = option(
        None, help="Most requests decoded together (default: the backend's, 16 for pt)."
    )


def check_deploy(config: DeployConfig) -> None:
    """Everything ``deploy`` can check before the model loads."""
    from martlet.manager import get_manager

    require(0 <= config.port <= 65535, "port", config.port, "0 to 65535", "8000")
    if config.max_batch_size is not None:
        require(
            config.max_batch_size >= 1, "max-batch-size", config.max_batch_size, "at least 1", "16"
        )
    config.check_server()
    if config.task_type != "causal_lm":
        raise ConfigError(
            f"deploy serves language models, not --task-type {config.task_type}",
            fix="leave --task-type out (score with `martlet infer --task reward`)",
        )
    if config.max_length is not None:
        raise ConfigError(
            "--max-length does not apply to serving",
            fix="use --max-model-len for the most tokens a request may hold",
        )
    for flag, value, default in (
        ("truncation-strategy", config.truncation_strategy, "delete"),
        ("loss-scope", config.loss_scope, "all"),
    ):
        if value != default:
            raise ConfigError(
                f"--{flag} is a training option",
                why="it says how training rows are encoded; a server only renders prompts",
                fix=f"leave --{flag} out",
            )
    if config.device and config.device_map is not None:
        raise ConfigError(
            "--device and --device-map both say where the model goes",
            fix="pass one of them",
        )
    registry = get_manager().registry
    backend = registry.get("inference_backends", config.infer_backend)
    if "serve" not in backend.capabilities:
        serving = [
            r.name for r in registry.records("inference_backends") if "serve" in r.capabilities
        ]
        raise ConfigError(
            f"the inference backend {backend.name!r} cannot serve",
            why="its record does not claim the `serve` capability",
            fix=f"pass --infer-backend {' or '.join(serving) or 'pt'}",
        )
    if config.template:
        registry.get("templates", config.template)
    if config.model_loader and config.model_loader != "auto":
        registry.get("model_loaders", config.model_loader)
    config.authenticator()
    plan(config)


@config_command(DeployConfig, name="deploy", check=check_deploy)
def deploy(config: DeployConfig) -> None:
    """Serve a model behind an OpenAI-compatible API (chat and text completions, streaming,
    LoRA adapters by name, API key or JWT authentication)."""
    serve(config)


# ---------------------------------------------------------------------- what is served


@dataclass
class Plan:
    """What the backend loads and the names it is served under."""

    model: str  #: a model id or folder, or a full-weights run directory
    loader_options: dict[str, Any]
    adapters: dict[str, str]  #: adapter name -> folder
    served: list[Any]  #: :class:`~martlet_serve.service.ServedModel` s, the default first


def _lora_folder(folder: Path) -> bool:
    """Whether ``folder`` holds a PEFT LoRA adapter (what is served beside a base model)."""
    import json

    file = folder / "adapter_config.json"
    if not file.is_file():
        return False
    try:
        kind = json.loads(file.read_text(encoding="utf-8")).get("peft_type")
    except (ValueError, AttributeError):
        return True  # damaged: check_folder names it
    return str(kind).upper() == "LORA"


def _template_of(config: DeployConfig, run: Any) -> tuple[str | None, dict[str, Any]]:
    """The template a model is answered with: ``--template``, else the run's (with its
    options); the run's system prompt unless ``--system`` replaces it."""
    options = dict(config.template_options())
    options["max_length"] = None
    if run is None:
        return config.template, options
    return run.answered_with(config.template, options, config.system)


def _run(path: str) -> Any:
    from martlet.runs import is_run, read_run

    return read_run(path) if Path(path).is_dir() and is_run(path) else None


def parse_adapters(entries: list[str]) -> dict[str, str]:
    """``NAME=DIR`` entries (or ``DIR``, named after its folder) as name -> folder.

    Raises:
        ConfigError: a missing folder, one without a LoRA adapter, or a name given twice.
        MartletError: an adapter's files are missing or damaged (named).
    """
    from martlet.rundirs import check_folder

    out: dict[str, str] = {}
    for entry in entries:
        name, eq, folder = str(entry).partition("=")
        if not eq:
            folder, name = name, Path(name).expanduser().resolve().name
        name, folder = name.strip(), folder.strip()
        if not name or not folder:
            raise ConfigError(
                f"--adapters {entry!r} is not NAME=DIR", fix="e.g. --adapters aria=output/aria"
            )
        if name in out:
            raise ConfigError(f"two adapters are called {name!r}", fix="give each its own NAME=")
        path = Path(folder).expanduser()
        if not path.is_dir():
            raise ConfigError(f"adapter {name!r}: {folder} is not a folder", fix="check the path")
        if not _lora_folder(path):
            raise ConfigError(
                f"adapter {name!r}: {folder} holds no LoRA adapter",
                why="adapters served by name are PEFT LoRA adapters (adapter_config.json "
                "with peft_type LORA)",
                fix="pass a LoRA run directory or a PEFT LoRA folder; serve another tuner's "
                "run with --model RUN_DIR",
            )
        run = _run(str(path))
        check_folder(path, run.tuner if run is not None else None)
        out[name] = str(path)
    return out


def plan(config: DeployConfig) -> Plan:
    """What to load and serve (reads run directories' config.yaml and checks their files;
    loads no model).

    A run directory that trained a LoRA adapter is served as its base model with the adapter
    beside it, under the served name (so adapters of the same base share one copy of it); a
    run that trained anything else is loaded whole by the backend. A run is answered with its
    template and system prompt, an adapter that is a run with its own.

    Raises:
        ConfigError: an adapter named like the model, or one that is no LoRA adapter.
        MartletError: a run's or an adapter's files are missing or damaged (named).
    """
    from martlet.rundirs import check_folder

    from martlet_serve.service import ServedModel

    options = {**config.loader_options(), **config.quant_options()}
    options.pop("torch_dtype", None)  # passed on by itself
    name = config.served_model_name or config.model
    adapters = parse_adapters(list(config.adapters))
    if name in adapters:
        raise ConfigError(
            f"an adapter is called {name!r} like the model",
            fix="rename the adapter, or pass --served-model-name",
        )
    run = _run(config.model)
    template, template_options = _template_of(config, run)
    model, adapter = config.model, None
    if run is not None:
        check_folder(run.path, run.tuner)  # a missing or damaged file is named now
        if _lora_folder(run.path):
            model, adapter = run.model, name
            # a QLoRA run: its adapter on the base quantized as it trained (unless told)
            options = {**run.loader_options(), **run.quantization(), **options}
    served = [ServedModel(name, adapter, config.model, template, template_options)]
    for adapter_name, folder in adapters.items():
        own = _run(folder)
        t_name, t_options = _template_of(config, own) if own else (template, template_options)
        served.append(ServedModel(adapter_name, adapter_name, folder, t_name, t_options))
    if adapter is not None:
        adapters = {adapter: config.model, **adapters}
    return Plan(model, options, adapters, served)


def load_service(config: DeployConfig) -> Any:
    """Load the backend's serving engine for ``config`` and the service over it."""
    from martlet.compose import chosen_options
    from martlet.manager import get_manager

    from martlet_serve.service import Service

    what = plan(config)
    backend = get_manager().registry.get("inference_backends", config.infer_backend)
    _check_quantization(config, backend, what)
    engine = backend.load().serving(
        what.model,
        adapters=what.adapters or None,
        device=config.device,
        torch_dtype=config.torch_dtype,
        model_loader=config.model_loader,
        loader_options=what.loader_options,
        max_model_len=config.max_model_len,
        max_batch_size=config.max_batch_size,
        max_queued_requests=config.max_queued_requests,
        **chosen_options(config, "infer_backend"),
    )
    try:
        service = Service(engine, what.served, config.limits())
        for served in what.served:  # a template that cannot load fails now, not per request
            service.template(served)
    except BaseException:
        engine.shutdown(drain=False)
        raise
    return service


def _check_quantization(config: DeployConfig, backend: Any, what: Plan) -> None:
    """``--quant-method`` needs a backend that quantizes as it loads (the ``quantize``
    capability); without one, a QLoRA run's adapter is served on the unquantized base (what
    it merges into), with a note."""
    if "quantize" in backend.capabilities or not what.loader_options.get("quant_method"):
        return
    if config.quant_method:
        raise ConfigError(
            f"the {backend.name} backend does not apply --quant-method",
            why=f"{backend.name} loads the weights itself; Martlet's quantizers work on the "
            "models the pt backend loads",
            fix="drop --quant-method (or serve a checkpoint quantized for that engine), or use "
            "--infer-backend pt",
        )
    for key in ("quant_method", "quant_bits", "quant_options"):
        what.loader_options.pop(key, None)
    click.echo(
        f"martlet: {backend.name} serves the run's adapter on the unquantized base model "
        "(it does not apply the run's --quant-method)",
        err=True,
    )


# ---------------------------------------------------------------------- the server


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``.

    Raises:
        ConfigError: the address cannot be bound (in use, not this machine's, ...).
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {host}:{port}",
            why=exc.strerror or str(exc),
            fix="choose another --port (0: any free one), or stop what uses it",
        ) from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def banner(config: DeployConfig, service: Any, base_url: str, key_set: bool) -> str:
    """What ``deploy`` prints when it is ready: the URL and example calls."""
    name = service.default
    names = ", ".join(service.models)
    key = f"${API_KEY_ENV}" if key_set else "none"
    auth = f' -H "Authorization: Bearer {key}"' if key_set else ""
    body = (
        f'{{"model": "{name}", "messages": [{{"role": "user", "content": "Hello!"}}], '
        f'"max_tokens": 64}}'
    )
    py_key = f'os.environ["{API_KEY_ENV}"]' if key_set else '"none"'
    return "\n".join(
        [
            f"martlet deploy: serving {names} at {base_url}",
            "  curl:",
            f"    curl {base_url}/chat/completions -H 'Content-Type: application/json'{auth} "
            f"-d '{body}'",
            "  python (pip install openai):",
            "    import os; from openai import OpenAI",
            f'    client = OpenAI(base_url="{base_url}", api_key={py_key})',
            f'    answer = client.chat.completions.create(model="{name}", '
            f'messages=[{{"role": "user", "content": "Hello!"}}])',
            "    print(answer.choices[0].message.content)",
        ]
    )


def _log_to_stderr() -> None:
    import logging

    logger = logging.getLogger("martlet")
    if not any(getattr(h, "_martlet_serve", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("martlet: %(levelname)s %(name)s: %(message)s"))
        handler._martlet_serve = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def serve(config: DeployConfig) -> None:
    """Run the server until SIGTERM or Ctrl-C, then drain and return.

    Raises:
        MartletError: the address cannot be bound, or the model failed to load (the server
            stops at once).
    """
    import uvicorn

    from martlet_serve.server import ServerState, create_app

    _log_to_stderr()
    auth = config.authenticator()
    state = ServerState()
    app = create_app(state, auth, max_body_bytes=config.max_body_bytes)
    sock = _bind(config.host, config.port)
    port = sock.getsockname()[1]
    base_url = f"http://{_url_host(config.host)}:{port}/v1"
    click.echo(
        f"martlet deploy: loading {config.model} ({config.infer_backend}); "
        f"{base_url[:-3]}/health answers 503 until it is ready",
    )
    sys.stdout.flush()
    if config.host not in ("127.0.0.1", "localhost", "::1") and not auth.enabled:
        click.echo(
            f"martlet: warning: listening on {config.host} without --api-key or a JWT key: "
            "anyone who can reach it can use it",
            err=True,
        )
    server = _server(
        uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"), state
    )
    failure: list[BaseException] = []

    def load() -> None:
        try:
            service = load_service(config)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            failure.append(exc)
            server.should_exit = True
            return
        if server.should_exit:  # stopped while loading
            service.engine.shutdown(drain=False)
            return
        state.ready(service)
        click.echo(banner(config, service, base_url, auth.api_key is not None))
        sys.stdout.flush()

    loader = threading.Thread(target=load, name="martlet-deploy-load", daemon=True)
    with _stop_quietly():
        loader.start()
        server.run(sockets=[sock])
    state.stopping()
    loader.join()
    if failure:
        error = failure[0]
        if isinstance(error, MartletError):
            raise error
        raise MartletError(
            f"cannot serve {config.model}",
            why=f"{type(error).__name__}: {error}",
            fix="run with --debug for the traceback",
            cause=error,
        ) from error
    if state.service is not None:
        state.service.engine.shutdown(drain=True)
        click.echo("martlet deploy: stopped", err=True)


def _server(config: Any, state: Any) -> Any:
    """uvicorn's server, marking the state ``stopping`` as soon as a signal asks it to stop
    (requests still arriving on open connections get 503 while the others finish)."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            state.stopping()
            super().handle_exit(sig, frame)

    return Server(config)


class _stop_quietly:
    """SIGTERM and SIGINT stop the server (uvicorn's handlers, while it runs) and then the
    process exits 0: uvicorn raises the signal again once it has stopped, and this catches
    it instead of the default handlers (which would kill the process, or raise
    KeyboardInterrupt)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __enter__(self) -> None:
        self._old = {}
        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._ignore) for s in self.SIGNALS}

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)

    @staticmethod
    def _ignore(sig: int, frame: Any) -> None:
        pass


def config_from(values: dict[str, Any]) -> DeployConfig:
    """A :class:`DeployConfig` from Python values (option names or aliases), composed with
    the records they select, and checked like the command's."""
    from martlet.config import build

    config = build(DeployConfig, values=values)
    check_deploy(config)
    return config


def fields_of(config: Any) -> dict[str, Any]:
    """``config``'s values by field name (its composed record options included)."""
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.init}
