"""Model hubs: explicit downloads, and finding what is already on this machine.

Nothing here downloads unless :func:`download` is called (``martlet download``). Loading a hub
id looks only on disk: first the folders ``martlet download`` recorded (any hub, any
``--output-dir``), then the local Hugging Face cache. The record of downloads is
``downloads.json`` in the Martlet cache directory.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from martlet.errors import ConfigError, MartletError, MissingDependencyError, UnknownNameError
from martlet.paths import cache_dir

HUBS = ("huggingface", "modelscope")
HUB_LABELS = {"huggingface": "the Hugging Face Hub", "modelscope": "ModelScope"}
#: ``org/name`` or a bare legacy name (``gpt2``); what the hubs accept as a repository id
HUB_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
DEFAULT_TIMEOUT = 10.0


class HubError(MartletError):
    """A hub could not be reached, or does not have what was asked for."""


def looks_like_hub_id(source: str) -> bool:
    """Whether ``source`` has the shape of a hub repository id (``org/name`` or ``name``)."""
    return bool(HUB_ID_RE.match(source)) and ".." not in source and not source.endswith(".gguf")


def check_hub(hub: str) -> str:
    """``hub`` normalised (``hf`` -> ``huggingface``, ``ms`` -> ``modelscope``).

    Raises:
        ConfigError: an unknown hub.
    """
    key = hub.strip().lower().replace("_", "").replace("-", "")
    aliases = {"hf": "huggingface", "huggingface": "huggingface"}
    aliases.update(ms="modelscope", modelscope="modelscope")
    if key not in aliases:
        raise ConfigError(f"unknown hub {hub!r}", fix=f"use one of: {', '.join(HUBS)}")
    return aliases[key]


# ---------------------------------------------------------------------- the downloads record


def _index_file() -> Path:
    return cache_dir() / "downloads.json"


def _read_index() -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(_index_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_index(data: dict[str, dict[str, Any]]) -> None:
    file = _index_file()
    file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=".downloads-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True)
    os.replace(tmp, file)


def record_download(hub: str, repo_id: str, path: str, *, revision: str | None, model: str = ""):
    """Remember that ``repo_id`` from ``hub`` (registered as ``model``) is at ``path``."""
    data = _read_index()
    entry = {"path": str(path), "revision": revision, "hub": hub, "repo_id": repo_id}
    data[f"{hub}:{repo_id}"] = entry
    if model:
        data[f"model:{model}"] = entry
    _write_index(data)


def downloaded(hub: str, repo_id: str) -> str | None:
    """The folder ``martlet download`` put ``repo_id`` from ``hub`` in, if it still exists."""
    entry = _read_index().get(f"{hub}:{repo_id}")
    if entry and Path(entry.get("path", "")).is_dir():
        return entry["path"]
    return None


def downloaded_model(model: str) -> str | None:
    """The folder ``martlet download MODEL`` put a registered model in, if it still exists."""
    entry = _read_index().get(f"model:{model}")
    if entry and Path(entry.get("path", "")).is_dir():
        return entry["path"]
    return None


def hf_cached(repo_id: str, revision: str | None = None) -> str | None:
    """The snapshot folder of ``repo_id`` in the local Hugging Face cache, if there is one.

    Never touches the network.
    """
    if not looks_like_hub_id(repo_id):
        return None
    try:
        from huggingface_hub import snapshot_download

        path = snapshot_download(
            repo_id, revision=revision, local_files_only=True, cache_dir=hf_cache_dir()
        )
    except Exception:  # noqa: BLE001 - not cached, in whatever way the library says it
        return None
    return path if path and (Path(path) / "config.json").is_file() else None


def find_local(repo_id: str, revision: str | None = None) -> tuple[str, str] | None:
    """Where a hub id is on this machine: ``(origin, path)`` with origin ``download`` or
    ``hf-cache``, or None."""
    for hub in HUBS:
        path = downloaded(hub, repo_id)
        if path:
            return "download", path
    path = hf_cached(repo_id, revision)
    if path:
        return "hf-cache", path
    return None


def hf_cache_dir() -> str:
    """The Hugging Face hub cache, from the environment as it is now (``HF_HUB_CACHE``,
    ``HF_HOME``), else huggingface_hub's default."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.path.expanduser(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return os.path.join(os.path.expanduser(os.environ["HF_HOME"]), "hub")
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def hf_endpoint() -> str:
    """The Hugging Face endpoint (``HF_ENDPOINT`` as it is now, else the default)."""
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def hf_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) forbids network access."""
    from huggingface_hub import constants

    flags = (os.environ.get("HF_HUB_OFFLINE"), os.environ.get("TRANSFORMERS_OFFLINE"))
    return bool(constants.HF_HUB_OFFLINE) or any(
        (f or "").strip().lower() in {"1", "true", "yes", "on"} for f in flags
    )


# ---------------------------------------------------------------------- downloading


@dataclass(frozen=True)
class Download:
    """What :func:`download` fetched: the hub, the repository id and the local folder."""

    hub: str
    repo_id: str
    path: str
    model: str = ""


def download(
    model: str,
    *,
    hub: str = "huggingface",
    output_dir: str | None = None,
    revision: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Download:
    """Download a model: a registered model id or a hub repository id.

    Args:
        model: a registered id (``qwen2.5-0.5b-instruct``) or a repository id on ``hub``.
        hub: ``huggingface`` or ``modelscope``.
        output_dir: put the files in this folder (default: the hub's own cache).
        revision: a branch, tag or commit.
        timeout: seconds to wait for the hub to answer before giving up.

    Interrupted downloads resume: the hubs' clients keep partial files and fetch only what is
    missing when run again.

    Raises:
        HubError: the hub cannot be reached (offline, blocked, timed out) or lacks the model.
        MissingDependencyError: ``modelscope`` is asked for but not installed.
        UnknownNameError: ``model`` is neither registered nor shaped like a repository id.
    """
    hub = check_hub(hub)
    repo_id, name = _repo_for(model, hub)
    if hub == "modelscope":
        path = _download_modelscope(repo_id, output_dir, revision, timeout)
    else:
        path = _download_hf(repo_id, output_dir, revision, timeout)
    record_download(hub, repo_id, path, revision=revision, model=name)
    return Download(hub=hub, repo_id=repo_id, path=str(path), model=name)


def close_models(model: str) -> list[str]:
    """Registered model ids close to ``model`` (aliases count), the closest first."""
    from martlet.records import normalize
    from martlet.registry import records

    known = {normalize(n): r.name for r in records("models") for n in r.names}
    close = difflib.get_close_matches(normalize(model), list(known), n=3, cutoff=0.6)
    return list(dict.fromkeys(known[c] for c in close))


def unknown_model(model: str, why: str | None = None) -> UnknownNameError:
    """The error for a name that is no registered model id, no path and no ``org/name`` id:
    close registered ids (else ``why``), and where to see them all. It never suggests
    ``martlet download MODEL``, which refuses such a name."""
    suggestions = close_models(model)
    return UnknownNameError(
        f"unknown model {model!r}",
        why=f"did you mean {', '.join(repr(s) for s in suggestions)}?" if suggestions else why,
        fix="`martlet model list` shows the registered ids; or give a local folder, a .gguf "
        "file, or a hub id as org/name (`martlet download org/name` fetches one)",
    )


def _repo_for(model: str, hub: str) -> tuple[str, str]:
    from martlet.registry import find

    record = find("models", model)
    if record is not None:
        repo_id = record.hub_ids.get(hub)
        if not repo_id:
            others = ", ".join(f"{h} ({i})" for h, i in record.hub_ids.items()) or "none"
            raise HubError(
                f"model {record.name!r} has no id on {HUB_LABELS[hub]}",
                why=f"its record names: {others}",
                fix="choose another --hub" if record.hub_ids else "it needs no download",
            )
        return repo_id, record.name
    if looks_like_hub_id(model) and "/" in model:
        return model, ""
    raise unknown_model(model)


def _unreachable(hub: str, repo_id: str, exc: BaseException | str) -> HubError:
    network = "unset HF_HUB_OFFLINE" if "HF_HUB_OFFLINE" in str(exc) else "check the network"
    endpoint = "MODELSCOPE_DOMAIN" if hub == "modelscope" else "HF_ENDPOINT"
    return HubError(
        f"cannot reach {HUB_LABELS[hub]} to download {repo_id!r}",
        why=str(exc) if not isinstance(exc, BaseException) else f"{type(exc).__name__}: {exc}",
        fix=f"{network} (and {endpoint} / HTTPS_PROXY), or pass a local folder that already "
        "holds the model instead of a hub id",
        cause=exc if isinstance(exc, BaseException) else None,
    )


def _probe(url: str, timeout: float) -> str | None:
    """None when ``url`` answers within ``timeout`` seconds (any HTTP status), else why not."""
    request = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            return None
    except urllib.error.HTTPError:
        return None  # it answered
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"{url} did not answer within {timeout:g} s ({reason})"


def _download_hf(repo_id: str, output_dir: str | None, revision: str | None, timeout: float):
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    endpoint = hf_endpoint()
    if hf_offline():
        why = "HF_HUB_OFFLINE is set, so nothing may be fetched"
    else:
        why = _probe(endpoint, timeout)
    kwargs: dict[str, Any] = {
        "revision": revision,
        "etag_timeout": timeout,
        "endpoint": endpoint,
        "cache_dir": hf_cache_dir(),
    }
    if output_dir:
        kwargs["local_dir"] = output_dir
    if why:
        # unreachable: what is already complete on disk still counts as downloaded
        try:
            return snapshot_download(repo_id, local_files_only=True, **kwargs)
        except Exception:  # noqa: BLE001 - not on disk either
            raise _unreachable("huggingface", repo_id, why) from None
    try:
        return snapshot_download(repo_id, **kwargs)
    except GatedRepoError as exc:
        raise HubError(
            f"{repo_id!r} on the Hugging Face Hub is gated",
            why="its owners must grant access first",
            fix=f"accept its terms at https://huggingface.co/{repo_id}, then log in "
            "(hf auth login, or set HF_TOKEN)",
            cause=exc,
        ) from exc
    except RepositoryNotFoundError as exc:
        raise HubError(
            f"the Hugging Face Hub has no model {repo_id!r} (or it is private)",
            fix="check the id (`martlet model list` shows registered ones); log in for private "
            "models",
            cause=exc,
        ) from exc
    except RevisionNotFoundError as exc:
        raise HubError(
            f"{repo_id!r} has no revision {revision!r}", fix="check --revision", cause=exc
        ) from exc
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:
        raise _unreachable("huggingface", repo_id, exc) from exc


def _download_modelscope(
    repo_id: str, output_dir: str | None, revision: str | None, timeout: float
):
    try:
        from modelscope import snapshot_download
    except ImportError as exc:
        raise MissingDependencyError(
            "downloading from ModelScope needs the modelscope package, which is not installed",
            fix="pip install modelscope  (or martlet-hf[modelscope]); or use --hub huggingface",
            cause=exc,
        ) from exc
    endpoint = os.environ.get("MODELSCOPE_DOMAIN", "www.modelscope.cn")
    if not endpoint.startswith(("http://", "https://")):
        endpoint = f"https://{endpoint}"
    why = _probe(endpoint, timeout)
    if why:
        raise _unreachable("modelscope", repo_id, why)
    kwargs: dict[str, Any] = {}
    if revision:
        kwargs["revision"] = revision
    if output_dir:
        kwargs["local_dir"] = output_dir
    try:
        return snapshot_download(repo_id, **kwargs)
    except Exception as exc:  # noqa: BLE001 - modelscope raises many kinds; all mean "failed"
        raise HubError(
            f"ModelScope could not download {repo_id!r}",
            why=f"{type(exc).__name__}: {exc}",
            fix="check the id and the network; run again to resume",
            cause=exc,
        ) from exc
