"""The Python API: what the CLI does, one import away.

Every function here is a thin layer over records and the registry, so a model or dataset
registered with :func:`register_model` / :func:`register_dataset` is usable by every command
run from the same process. Heavy libraries are imported by the plugins that do the work, when
one of these functions is called — never when ``martlet`` is imported.

The plugins that do the work: model loaders (``martlet_model_loaders``) load models and
tokenizers, templates (``martlet_templates``) format chats, dataset sources
(``martlet_dataset_sources``) read rows. ``martlet-hf`` and ``martlet-data`` provide the
standard ones.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from martlet.errors import ConfigError, MartletError, PluginError, UnknownNameError
from martlet.hookspecs import hookimpl
from martlet.records import DatasetRecord, ModelRecord, Record, check_kind

_local_counter = itertools.count(1)


def _manager():
    from martlet.manager import get_manager

    return get_manager()


def _pick(kind: str, spec: str, method: str, *args: Any, **options: Any) -> Record:
    """The one record of ``kind`` whose implementation's ``method(spec, ...)`` answers True."""
    registry = _manager().registry
    claims = []
    for record in registry.records(kind):
        if record.missing_requirements():
            continue
        try:
            if getattr(record.load()(), method)(spec, *args, **options):
                claims.append(record)
        except MartletError:
            raise
        except Exception as exc:  # noqa: BLE001 - a broken implementation must not hide others
            raise PluginError(
                f"{record.label} {record.name!r} failed while checking {spec!r}",
                why=f"{type(exc).__name__}: {exc}",
                fix=f"report it to the plugin {record.origin}",
                cause=exc,
            ) from exc
    label = check_kind(kind).label
    if not claims:
        refused = _refusal(registry.records(kind), spec)
        if refused is not None:  # a source knows the spec is meant for it but malformed
            raise refused
        claimable = registry.names(kind)
        names = ", ".join(claimable) or "none"
        why = f"installed: {names}"
        fix = f"check the name or path; `martlet plugins --kind {kind}` lists what is installed"
        unavailable = registry.unavailable_providers(kind)
        if unavailable:  # e.g. MARTLET_DISABLE_PLUGINS=hf: the plugin that would read it is off
            off, enable = registry.unavailable_hint(kind, unavailable)
            why = f"{off}; the ones in use ({names}) cannot read it" if claimable else off
            fix = f"{enable}; or {fix}"
        raise UnknownNameError(f"no {label} can read {spec!r}", why=why, fix=fix)
    if len(claims) > 1:
        names = ", ".join(r.name for r in claims)
        raise MartletError(
            f"{spec!r} could be read by several {kind.replace('_', ' ')}: {names}",
            fix="name the one to use (e.g. loader=... / source=...)",
        )
    return claims[0]


def _refusal(records: list[Record], spec: str) -> MartletError | None:
    """The first error an implementation's optional ``refusal(spec)`` gives: a spec it would
    read were it not malformed (``sample-sft#0``), said in its own words."""
    for record in records:
        if record.missing_requirements():
            continue
        refusal = getattr(record.load()(), "refusal", None)
        error = refusal(spec) if refusal is not None else None
        if isinstance(error, MartletError):
            return error
    return None


# ------------------------------------------------------------------------- models


def resolve_model(model: str) -> tuple[str, ModelRecord | None]:
    """Where ``model`` (a registered id, a local path or a hub id) is: ``(source, record)``.

    For a registered id the record's ``impl`` (a resolver returning a local path, or None),
    then its ``path``, then its Hugging Face hub id are tried in that order. Anything else is
    returned unchanged as the source.
    """
    record = _manager().registry.find("models", model)
    if record is None:
        return model, None
    assert isinstance(record, ModelRecord)
    if record.impl:
        found = record.load()(record)
        if found:
            return str(found), record
    if record.path:
        return record.path, record
    for hub in ("huggingface", "modelscope"):
        if record.hub_ids.get(hub):
            return record.hub_ids[hub], record
    raise MartletError(
        f"model {record.name!r} names no place to load it from",
        why="its record has no resolver, no path and no hub id",
        fix=f"report it to the plugin {record.origin}",
    )


def model_loader(source: str, record: ModelRecord | None = None, loader: str | None = None):
    """The model loader (an instance) for ``source``: the one named, the record's, or the one
    loader that says it can load the source (``loader`` None, empty or ``auto``: the
    ``--model-loader`` default)."""
    if loader == "auto":
        loader = None
    name = loader or (record.loader if record is not None else "")
    chosen = (
        _manager().registry.get("model_loaders", name)
        if name
        else _pick("model_loaders", source, "can_load")
    )
    return chosen.load()()


def load_model(
    model: str,
    *,
    loader: str | None = None,
    quant_method: str | None = None,
    quant_bits: int | None = None,
    quant_options: Mapping[str, Any] | None = None,
    **options: Any,
) -> tuple[Any, Any]:
    """Load a model and its tokenizer (or processor): ``(model, tokenizer)``.

    Args:
        model: a registered model id (``smollm2-135m-instruct``), a local folder or file, or a
            hub id.
        loader: the model loader to use; by default the one that says it can load the source.
        quant_method, quant_bits, quant_options: quantize the model as it loads with this
            quantizer record, at this width, with its options (``--quant-method``): its
            ``quantize_on_load`` gives the loader's ``quantization_config``, and its
            ``quantize_loaded``, where it has one, quantizes the loaded model. A checkpoint
            quantized elsewhere goes to the ``prequantized`` quantizer named like its method.
        options: passed to the loader, e.g. ``torch_dtype``, ``device_map``, ``attn_impl``,
            ``max_memory``, ``trust_remote_code``.

    Calls the ``martlet_model_loaded`` hook with the model and the options.
    """
    chosen = None
    if quant_method:
        from martlet.quantize import chosen as choose

        chosen = choose(quant_method, quant_bits, stage="load", options=dict(quant_options or {}))
        config = chosen.quantizer.quantize_on_load(chosen.bits, **chosen.options)
        if config is not None:
            options["quantization_config"] = config
    source, record = resolve_model(model)
    if chosen is not None and (already := _quantized_as(source)):
        raise ConfigError(
            f"{model} is quantized with {already} already",
            why=f"--quant-method {chosen.record.name} quantizes unquantized weights as they load",
            fix="leave out --quant-method: the checkpoint loads quantized as it is",
        )
    if loader is None and chosen is None:
        loader = _loader_for_quantized(source)
    loaded, tokenizer = model_loader(source, record, loader).load(source, **options)
    if chosen is not None:
        after = getattr(chosen.quantizer, "quantize_loaded", None)
        if after is not None:
            loaded = after(loaded, chosen.bits, **chosen.options)
    else:
        loaded = _prepare_prequantized(loaded)
    _manager().model_loaded(loaded, options)
    return loaded, tokenizer


def _loader_for_quantized(source: str) -> str | None:
    """The model loader named like the quantization of the folder ``source`` (its
    ``config.json``'s ``quantization_config.quant_method``), if one is registered: a folder a
    quantizer plugin wrote in its own layout (hqq, quanto) goes to that plugin's loader, not to
    a general one that would read it as plain weights."""
    method = _quantized_as(source)
    if method is None:
        return None
    found = _manager().registry.find("model_loaders", method.lower())
    return found.name if found is not None else None


def _quantized_as(source: str) -> str | None:
    """The ``quantization_config.quant_method`` of the folder ``source``'s ``config.json``
    (None for a file, a hub id, or a folder that is not quantized)."""
    import json
    from pathlib import Path

    file = Path(source) / "config.json"
    if not file.is_file():
        return None
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    quantization = config.get("quantization_config") if isinstance(config, dict) else None
    method = quantization.get("quant_method") if isinstance(quantization, dict) else None
    return method if isinstance(method, str) and method else None


def _prepare_prequantized(model: Any) -> Any:
    from martlet.quantize import prequantized

    record = prequantized(getattr(model, "config", None))
    if record is None:
        return model
    prepare = getattr(record.load()(), "prepare_prequantized", None)
    return prepare(model) if prepare is not None else model


def load_tokenizer(model: str, *, loader: str | None = None, **options: Any) -> Any:
    """Load only the tokenizer (or processor) of ``model``; see :func:`load_model`."""
    source, record = resolve_model(model)
    if loader is None:
        loader = _loader_for_quantized(source)
    return model_loader(source, record, loader).load_tokenizer(source, **options)


def load_template(tokenizer: Any, name: str | None = None, **options: Any) -> Any:
    """A chat template bound to ``tokenizer``: the one named, else ``"auto"`` (the
    tokenizer's own chat template). ``options`` (``system``, ``max_length``, ...) go to it."""
    record = _manager().registry.get("templates", name or "auto")
    return record.load()(tokenizer, **options)


#: the capability of an inference backend whose class takes a model already in memory,
#: ``cls(model, tokenizer, template=..., **options)`` (what :func:`load_engine` builds)
LIVE_MODEL = "live-model"


def load_engine(
    model: Any,
    tokenizer: Any,
    *,
    backend: str | None = None,
    needs: Sequence[str] = (),
    template: Any = None,
    **options: Any,
) -> Any:
    """An inference engine (``inference_backends``) for a model already in memory.

    Args:
        model, tokenizer: what the engine generates with (a training run's live model, its
            adapters and current weights included).
        backend: the record to use; by default the first installed one, by name, that
            claims every capability in ``needs`` and ``"live-model"`` (it generates with a
            model object in memory: a backend whose engine loads its own copy does not).
        needs: capabilities the caller relies on, e.g. ``("token-ids",)`` for
            ``generate_ids``.
        template: the chat template the engine renders conversations with (None when only
            token ids are given).
        options: passed to the engine's constructor.

    Raises:
        UnknownNameError: no installed backend claims ``needs`` (saying which do exist).
        MissingDependencyError: the chosen backend needs a package that is missing.
    """
    registry = _manager().registry
    # the engine is handed a model object: only a backend that generates with one (the
    # PyTorch engine; not a server that loads its own copy from disk) will do
    needs = (*needs, LIVE_MODEL)
    if backend:
        record = registry.get("inference_backends", backend)
        missing = set(needs) - set(record.capabilities)
        if missing:
            raise MartletError(
                f"inference backend {record.name!r} cannot do what is asked",
                why=f"it does not claim {', '.join(sorted(missing))}",
                fix="choose another backend, or leave the choice to Martlet",
            )
    else:
        fit = [
            r
            for r in sorted(registry.records("inference_backends"), key=lambda r: r.name)
            if set(needs) <= set(r.capabilities) and not r.missing_requirements()
        ]
        if not fit:
            have = ", ".join(registry.names("inference_backends")) or "none"
            wanted = ", ".join(needs) or "any capability"
            raise UnknownNameError(
                f"no installed inference backend can generate here (needs {wanted})",
                why=f"installed: {have}",
                fix="install one that can, e.g. `pip install martlet-engine-pt` (the PyTorch "
                "engine)",
            )
        record = fit[0]
    return record.load()(model, tokenizer, template=template, **options)


# ------------------------------------------------------------------------- datasets


def load_dataset(spec: str, **options: Any) -> Any:
    """Read a dataset as canonical rows (OpenAI-style ``messages`` and friends).

    Args:
        spec: ``NAME_OR_PATH[:subset][#N]`` — a registered dataset name, a local file or
            folder, or a hub id.
        options: passed to the dataset source, e.g. ``streaming``, ``columns``,
            ``on_bad_rows``, ``split``, ``hub``, ``model_name``, ``model_author``.

    Returns: a list of rows, or an iterable of rows when ``streaming=True``.
    """
    source = options.pop("source", None)
    chosen = (
        _manager().registry.get("dataset_sources", source)
        if source
        else _pick("dataset_sources", spec, "can_read", **_claim_options(options))
    )
    return chosen.load()().read(spec, **options)


def _claim_options(options: Mapping[str, Any]) -> dict[str, Any]:
    # only what changes *which* source reads a spec is passed to can_read
    return {k: options[k] for k in ("hub",) if k in options}


# ------------------------------------------------------------------------- registering


class _LocalRecords:
    """A local plugin holding records registered from Python."""

    MARTLET_API = 1

    def __init__(self, models: Sequence[ModelRecord] = (), datasets: Sequence[DatasetRecord] = ()):
        self.models = list(models)
        self.datasets = list(datasets)

    @hookimpl
    def martlet_models(self):
        return self.models

    @hookimpl
    def martlet_datasets(self):
        return self.datasets


def register_model(name: str, *, family: str = "custom", **fields: Any) -> ModelRecord:
    """Register a model id for this process (``path=``, ``hub_ids=``, ``template=``, ...).

    Raises:
        RecordError: the fields do not make a valid :class:`~martlet.records.ModelRecord`.
        PluginError: the name is already registered.
    """
    fields.setdefault("summary", f"registered from Python: {name}")
    record = ModelRecord(name=name, family=family, **fields)
    _manager().register(
        _LocalRecords(models=[record]), name=f"python:{name}#{next(_local_counter)}"
    )
    return _manager().registry.get("models", name)  # with its origin filled in


def register_dataset(name: str, **fields: Any) -> DatasetRecord:
    """Register a named dataset for this process (``path=``, ``hub_ids=``, ``format=``, ...).

    Raises:
        RecordError: the fields do not make a valid :class:`~martlet.records.DatasetRecord`.
        PluginError: the name is already registered.
    """
    fields.setdefault("summary", f"registered from Python: {name}")
    record = DatasetRecord(name=name, **fields)
    _manager().register(
        _LocalRecords(datasets=[record]), name=f"python:{name}#{next(_local_counter)}"
    )
    return _manager().registry.get("datasets", name)
