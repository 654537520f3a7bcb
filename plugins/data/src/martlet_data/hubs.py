"""Raw rows of hub datasets: Hugging Face through ``datasets``, ModelScope through ``modelscope``.

Nothing here hangs when the network is off: before asking a hub, :func:`check_reachable` opens
one TCP connection to it with a short timeout (unless offline mode is on, in which case only
the local cache is read), and a failure is a :class:`HubError` naming the hub.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlparse
from urllib.request import getproxies, proxy_bypass

from martlet.errors import ConfigError, MissingDependencyError

from martlet_data.errors import DataError

log = logging.getLogger("martlet.data")

HUB_LABELS = {"huggingface": "the Hugging Face Hub", "modelscope": "ModelScope"}
PROBE_TIMEOUT = float(os.environ.get("MARTLET_HUB_TIMEOUT", "5"))
_TRUE = {"1", "true", "yes", "on"}
#: the branch where the Hub keeps its automatic parquet conversion of a dataset
PARQUET_REVISION = "refs/convert/parquet"


class HubError(DataError):
    """A hub could not be reached, or does not have the dataset."""


def hf_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def ms_endpoint() -> str:
    domain = os.environ.get("MODELSCOPE_DOMAIN", "www.modelscope.cn")
    return domain if "://" in domain else f"https://{domain}"


def hf_offline() -> bool:
    return any(
        os.environ.get(var, "").strip().lower() in _TRUE
        for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def check_reachable(hub: str, endpoint: str, dataset: str) -> None:
    """Open one TCP connection to ``endpoint`` (or the proxy for it) within a few seconds.

    Raises:
        HubError: it cannot be reached; the message names the hub and what to do instead.
    """
    url = urlparse(endpoint)
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    proxy = getproxies().get(url.scheme or "https")
    if proxy and not proxy_bypass(host):
        purl = urlparse(proxy if "://" in proxy else f"http://{proxy}")
        host, port = purl.hostname or host, purl.port or 80
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT):
            pass
    except OSError as exc:
        fix = (
            "connect to the network and retry, or download the dataset where there is one "
            "and pass its local path"
        )
        if hub == "huggingface":
            fix += "; with HF_HUB_OFFLINE=1 a dataset already in the local cache is read offline"
        raise HubError(
            f"cannot reach {HUB_LABELS[hub]} ({endpoint}) to read dataset {dataset!r}",
            why=f"connecting to {host}:{port} failed: {exc.strerror or exc}",
            fix=fix,
            cause=exc,
        ) from None


# ------------------------------------------------------------------------ Hugging Face


def hf_rows(
    dataset: str,
    subsets: tuple[str, ...],
    split: str,
    *,
    streaming: bool,
    num_proc: int | None = None,
) -> Callable[[], Iterator[tuple[str, Any]]]:
    """A factory of ``(where, row)`` iterators over a Hugging Face dataset; ``subsets`` are its
    configs (none: the default one).

    The hub is checked (or offline mode noted) and the dataset opened before this returns, so
    errors surface at once; rows are read as the iterators are consumed.
    """
    try:
        import datasets  # noqa: F401
    except ImportError as exc:  # pragma: no cover - a dependency of martlet-data
        raise MissingDependencyError(
            "reading Hugging Face datasets needs the `datasets` package",
            fix="pip install datasets",
            cause=exc,
        ) from exc
    if not hf_offline():
        check_reachable("huggingface", hf_endpoint(), dataset)
    loaded = [
        (subset, _hf_load(dataset, subset, split, streaming, num_proc))
        for subset in (subsets or (None,))
    ]
    return lambda: _iterate(dataset, split, loaded)


def _iterate(dataset: str, split: str, loaded: list) -> Iterator[tuple[str, Any]]:
    for subset, ds in loaded:
        label = f"{dataset}:{subset}" if subset else dataset
        for number, row in enumerate(ds, 1):
            yield f"{label} ({split}), row {number}", row


def _hf_load(dataset: str, subset: str | None, split: str, streaming: bool, num_proc):
    import datasets

    kwargs: dict[str, Any] = {"split": split, "streaming": streaming}
    if num_proc and not streaming:
        kwargs["num_proc"] = num_proc
    try:
        return datasets.load_dataset(dataset, subset, **kwargs)
    except Exception as exc:  # noqa: BLE001 - translated to what users can act on
        if "scripts are no longer supported" not in str(exc):
            raise _hf_error(exc, dataset, subset, split) from exc
        # a dataset published as a loading script (CMMLU, PIQA, ...): datasets >= 4 runs no
        # scripts, but the Hub keeps an automatic parquet conversion of most of them
        log.info("%s is a script dataset; reading the Hub's parquet conversion instead", dataset)
        try:
            return datasets.load_dataset(dataset, subset, revision=PARQUET_REVISION, **kwargs)
        except Exception:  # noqa: BLE001 - the original error says more
            raise _hf_error(exc, dataset, subset, split) from exc


def _hf_error(exc: Exception, dataset: str, subset: str | None, split: str) -> Exception:
    text = f"{type(exc).__name__}: {exc}"
    name = f"{dataset}:{subset}" if subset else dataset
    if isinstance(exc, ConnectionError) or "OfflineModeIsEnabled" in text:
        if hf_offline():
            return HubError(
                f"dataset {name!r} is not in the local Hugging Face cache, and offline mode is on",
                why=text,
                fix="unset HF_HUB_OFFLINE / HF_DATASETS_OFFLINE with a network to download it, "
                "or pass a local path",
            )
        return HubError(
            f"cannot reach the Hugging Face Hub ({hf_endpoint()}) to read dataset {name!r}",
            why=text,
            fix="connect to the network and retry, or pass a local path",
        )
    kind = type(exc).__name__
    if kind in ("DatasetNotFoundError", "FileNotFoundError", "RepositoryNotFoundError"):
        return HubError(
            f"the Hugging Face Hub has no dataset {dataset!r} (or it is private or gated)",
            why=text,
            fix="check the id at huggingface.co/datasets; for a gated one, log in with "
            "`hf auth login` after accepting its terms",
        )
    if isinstance(exc, ValueError) and (
        "config" in str(exc).lower() or "split" in str(exc).lower()
    ):
        return ConfigError(
            f"dataset {dataset!r} has no subset {subset!r} or split {split!r}",
            why=str(exc),
            fix="choose one of the subsets or splits it lists (NAME:SUBSET, --dataset-split)",
        )
    return DataError(f"cannot read Hugging Face dataset {name!r}", why=text)


# ------------------------------------------------------------------------ ModelScope


def ms_rows(
    dataset: str,
    subsets: tuple[str, ...],
    split: str,
    *,
    streaming: bool,
    num_proc: int | None = None,
) -> Callable[[], Iterator[tuple[str, Any]]]:
    """Like :func:`hf_rows`, for a ModelScope dataset (needs the optional ``modelscope``)."""
    try:
        from modelscope.msdatasets import MsDataset
    except ImportError as exc:
        raise MissingDependencyError(
            f"reading ModelScope dataset {dataset!r} needs the `modelscope` package, "
            "which is not installed",
            why="ModelScope support is an optional extra of martlet-data",
            fix="pip install 'martlet-data[modelscope]' (or use the Hugging Face id: "
            "--dataset-hub huggingface)",
            cause=exc,
        ) from None
    check_reachable("modelscope", ms_endpoint(), dataset)
    loaded = []
    for subset in subsets or ("default",):
        try:
            ds = MsDataset.load(dataset, subset_name=subset, split=split, use_streaming=streaming)
        except Exception as exc:  # noqa: BLE001 - translated to what users can act on
            raise HubError(
                f"cannot read ModelScope dataset {dataset}:{subset} ({split})",
                why=f"{type(exc).__name__}: {exc}",
                fix="check the id and subset at modelscope.cn/datasets, or pass a local path",
                cause=exc,
            ) from exc
        if hasattr(ds, "to_hf_dataset") and not streaming:
            ds = ds.to_hf_dataset()
        loaded.append((None if subset == "default" else subset, ds))
    return lambda: _iterate(dataset, split, loaded)
