"""The server under load and at its bounds: a body over the limit is 413, a full queue is 429
with Retry-After, and a client that goes away cancels its generation (its slot frees at
once)."""

from __future__ import annotations

import http.client
import json
import re
import time

import openai
import pytest

pytestmark = pytest.mark.slow

#: long enough to still be decoding while the test does something else (8192-token context)
LONG = {"prompt": "Hello", "max_tokens": 8000, "ignore_eos": True, "temperature": 0}


def open_stream(server, body):
    """A streamed request whose first event has arrived (it is decoding): its connection
    and response."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    conn.request("POST", "/v1/completions", json.dumps({**body, "stream": True}), server.headers())
    response = conn.getresponse()
    assert response.status == 200
    assert response.readline().startswith(b"data: ")
    return conn, response


def until_free(server, attempts: int = 400) -> dict:
    """Ask until the one slot is free again (429 until then); the answer."""
    for _ in range(attempts):
        status, _, body = server.request(
            "POST", "/v1/completions", {"prompt": "Hi", "max_tokens": 2, "temperature": 0}
        )
        if status == 200:
            return json.loads(body)
        assert status == 429, body
        time.sleep(0.05)
    raise AssertionError("the slot never freed")


def cancellations(server, more_than: int = 0) -> list[int]:
    """The token counts of the cancellations the server logged, in order (waiting a little
    for more than ``more_than`` of them)."""
    deadline = time.monotonic() + 10
    while True:
        found = re.findall(r"went away after (\d+) tokens; cancelled", server.stderr)
        if len(found) > more_than or time.monotonic() > deadline:
            return [int(n) for n in found]
        time.sleep(0.05)


def test_a_body_over_the_limit_is_413(busy_server, envelope):
    big = json.dumps({"prompt": "x" * 4000, "max_tokens": 1}).encode()
    status, _, body = busy_server.request("POST", "/v1/completions", big)
    assert status == 413 and envelope(body)["code"] == "request_too_large"
    # without a Content-Length, counted as it arrives
    conn = http.client.HTTPConnection("127.0.0.1", busy_server.port, timeout=30)
    chunks = iter([big[:1000], big[1000:2500], big[2500:]])
    conn.request("POST", "/v1/completions", chunks, {"Content-Type": "application/json"},
                 encode_chunked=True)  # fmt: skip
    response = conn.getresponse()
    assert response.status == 413 and envelope(response.read())["code"] == "request_too_large"
    conn.close()
    small = {"prompt": "x" * 100, "max_tokens": 1}
    assert busy_server.request("POST", "/v1/completions", small)[0] == 200


def test_a_full_queue_is_429_with_retry_after_until_the_slot_frees(busy_server, envelope):
    conn, response = open_stream(busy_server, LONG)
    try:
        status, headers, body = busy_server.request(
            "POST", "/v1/completions", {"prompt": "Hi", "max_tokens": 2}
        )
        assert status == 429
        assert headers.get("retry-after") == "1"
        error = envelope(body)
        assert error["type"] == "rate_limit_error" and error["code"] == "queue_full"
        with pytest.raises(openai.RateLimitError):
            busy_server.client().completions.create(model="long", prompt="Hi", max_tokens=2)
    finally:
        conn.close()  # the client goes away: the long request is cancelled
    answer = until_free(busy_server)
    assert answer["usage"]["completion_tokens"] == 2
    made = cancellations(busy_server, more_than=0)
    assert made and made[-1] < LONG["max_tokens"]


def test_a_client_that_stops_reading_a_stream_cancels_it(busy_server):
    before = len(cancellations(busy_server, more_than=-1))
    conn, response = open_stream(busy_server, LONG)
    for _ in range(3):
        response.readline()
    conn.close()
    until_free(busy_server)
    made = cancellations(busy_server, more_than=before)
    assert len(made) == before + 1 and made[-1] < LONG["max_tokens"]


def test_a_client_that_goes_away_before_a_whole_answer_cancels_it(busy_server):
    before = len(cancellations(busy_server, more_than=-1))
    taken = len(re.findall(r"max_tokens 8000\b", busy_server.stderr))
    conn = http.client.HTTPConnection("127.0.0.1", busy_server.port, timeout=60)
    conn.request("POST", "/v1/completions", json.dumps(LONG), busy_server.headers())
    until_busy(busy_server, taken)
    conn.close()  # without reading: the answer would have taken thousands of steps
    until_free(busy_server)
    made = cancellations(busy_server, more_than=before)
    assert len(made) == before + 1 and made[-1] < LONG["max_tokens"]


def until_busy(server, before: int) -> None:
    """Wait until the server has taken more than ``before`` requests of ``max_tokens`` 8000
    (it logs each request it accepts)."""
    deadline = time.monotonic() + 120  # a loaded CI machine can be slow to accept
    while len(re.findall(r"max_tokens 8000\b", server.stderr)) <= before:
        assert time.monotonic() < deadline, "the long request never started"
        time.sleep(0.02)
