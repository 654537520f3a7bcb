"""The ``http`` reward: completions scored by a server.

Each batch is one ``POST`` of ``{"prompts": [...], "completions": [...], "columns": {NAME:
[...]}}`` (JSON, the dataset's columns one value per completion) to ``--reward-url``; the server
answers ``{"rewards": [...]}``, one number (or ``null``: does not apply) per completion. A busy
server (429, 503) or one that cannot be reached is tried again ``--reward-retries`` times, after
its ``Retry-After`` or a growing pause; anything else is a MartletError saying what the server
did. Standard library only.
"""

from __future__ import annotations

import json
import math
import os
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from martlet.errors import ConfigError, MartletError
from martlet.rewards import NOT_COLUMNS

#: statuses that mean "try again later"
BUSY = (429, 503)


class HttpReward:
    """Scores from ``--reward-url``."""

    #: seconds before the first retry (doubled each time, at most ``max_pause``)
    pause = 0.5
    max_pause = 30.0

    def __init__(
        self,
        *,
        reward_url: str | None = None,
        reward_timeout: float = 60.0,
        reward_retries: int = 3,
        reward_api_key: str | None = None,
        **_: Any,
    ) -> None:
        if not reward_url:
            raise ConfigError(
                "the http reward needs --reward-url URL",
                why="it POSTs each batch of completions there and reads back their rewards",
                fix="pass --reward-url, e.g. --reward-url http://127.0.0.1:8000/reward",
            )
        self.url = reward_url
        self.timeout = reward_timeout
        self.retries = reward_retries
        self.api_key = reward_api_key or os.environ.get("MARTLET_REWARD_API_KEY") or None

    def __call__(
        self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any
    ) -> list[float | None]:
        columns = {k: _listed(v) for k, v in kwargs.items() if k not in NOT_COLUMNS}
        body = json.dumps(
            {"prompts": list(prompts), "completions": list(completions), "columns": columns},
            default=str,
        ).encode("utf-8")
        answer = self._post(body)
        return self._rewards(answer, len(completions))

    def _post(self, body: bytes) -> Any:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        attempt = 0
        while True:
            request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    raw = response.read()
                break
            except urllib.error.HTTPError as exc:
                detail = _detail(exc)
                if exc.code in BUSY and attempt < self.retries:
                    attempt += 1
                    time.sleep(self._wait(attempt, exc.headers.get("Retry-After")))
                    continue
                raise MartletError(
                    f"the reward server at {self.url} answered {exc.code} {exc.reason}"
                    + (f" after {attempt + 1} tries" if exc.code in BUSY else ""),
                    why=detail or None,
                    fix="raise --reward-retries or --reward-timeout, or lighten the server's load"
                    if exc.code in BUSY
                    else "check the server's log and that --reward-url is its reward route",
                ) from None
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                if attempt < self.retries:
                    attempt += 1
                    time.sleep(self._wait(attempt, None))
                    continue
                raise MartletError(
                    f"cannot reach the reward server at {self.url}",
                    why=f"{type(reason).__name__}: {reason} (tried {attempt + 1} times)",
                    fix="start the server, or check --reward-url (and --reward-timeout for a "
                    "slow one)",
                    cause=exc,
                ) from None
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MartletError(
                f"the reward server at {self.url} did not answer JSON",
                why=f"{exc}: {raw[:200]!r}",
                fix='answer {"rewards": [one number or null per completion]}',
            ) from None

    def _wait(self, attempt: int, retry_after: str | None) -> float:
        if retry_after is not None:
            try:
                return min(max(0.0, float(retry_after)), self.max_pause)
            except ValueError:
                pass
        return min(self.pause * 2 ** (attempt - 1), self.max_pause)

    def _rewards(self, answer: Any, n: int) -> list[float | None]:
        rewards = answer.get("rewards") if isinstance(answer, dict) else None
        if not isinstance(rewards, list):
            raise MartletError(
                f"the reward server at {self.url} answered no list of rewards",
                why=f"it answered {json.dumps(answer)[:200]}",
                fix='answer {"rewards": [one number or null per completion]}',
            )
        if len(rewards) != n:
            raise MartletError(
                f"the reward server at {self.url} answered {len(rewards)} rewards for "
                f"{n} completions",
                fix="answer one number (or null) per completion, in the order sent",
            )
        out: list[float | None] = []
        for i, value in enumerate(rewards):
            if value is None:
                out.append(None)
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                if not math.isfinite(value):
                    raise MartletError(
                        f"the reward server at {self.url} answered {value!r} for completion {i}",
                        fix="answer finite numbers (or null where a reward does not apply)",
                    )
                out.append(float(value))
            else:
                raise MartletError(
                    f"the reward server at {self.url} answered {value!r} for completion {i}, "
                    "not a number",
                    fix="answer one number (or null) per completion",
                )
        return out


def _listed(value: Any) -> Any:
    return list(value) if isinstance(value, (tuple, list)) else value


def _detail(exc: urllib.error.HTTPError) -> str:
    try:
        text = exc.read().decode("utf-8", "replace").strip()
    except Exception:  # noqa: BLE001 - the status says enough
        return ""
    return text[:300]
