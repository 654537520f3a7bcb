"""A fuzz pass over the request schema against the running server: bodies mixing plausible
values, out-of-range values and arbitrary JSON in every field never get a 500, every error is
the OpenAI envelope with the status's type, and every success is a well-formed answer (or
server-sent events ending in ``[DONE]``)."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.slow

TYPES = {
    400: "invalid_request_error",
    404: "not_found_error",
    422: "invalid_request_error",
}

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


def field(valid, invalid=None):
    """Mostly a valid value, sometimes one out of range."""
    return valid if invalid is None else st.one_of(valid, valid, valid, valid, invalid)


@st.composite
def bodies(draw, required, optional):
    """A body of plausible values; a quarter of them with one field (or an unknown one)
    replaced by any JSON at all."""
    body = draw(st.fixed_dictionaries(required, optional=optional))
    if draw(st.integers(0, 3)) == 0:
        body[draw(st.sampled_from(sorted({*required, *optional, "logit_bias"})))] = draw(JSON)
    return body


TEXT = st.text(max_size=30)
MESSAGES = st.lists(
    st.fixed_dictionaries(
        {
            "role": st.sampled_from(["system", "developer", "user", "assistant"]),
            "content": st.one_of(
                TEXT,
                st.lists(
                    st.fixed_dictionaries({"type": st.just("text"), "text": TEXT}), max_size=2
                ),
            ),
        }
    ),
    min_size=1,
    max_size=3,
)
IDS = st.lists(st.integers(0, 511), min_size=1, max_size=12)
BAD_IDS = st.lists(st.integers(-3, 600), max_size=12)
COMMON = {
    "model": field(st.sampled_from(["tiny", "tiny-lora"]), st.just("missing")),
    "max_tokens": field(st.integers(1, 12), st.integers(-2, 40)),
    "n": field(st.integers(1, 3), st.integers(-1, 6)),
    "stop": st.one_of(st.text(max_size=3), st.lists(st.text(max_size=3), max_size=3)),
    "stream": st.booleans(),
    "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}),
    "temperature": field(st.floats(0, 2), st.floats(-1, 3)),
    "top_p": field(st.floats(0.01, 1), st.floats(-0.5, 1.5)),
    "top_k": field(st.integers(-1, 50), st.integers(-3, 0)),
    "seed": field(st.integers(0, 2**32), st.integers(-(2**65), 2**65)),
    "presence_penalty": field(st.floats(-2, 2), st.floats(-3, 3)),
    "frequency_penalty": field(st.floats(-2, 2), st.floats(-3, 3)),
    "repetition_penalty": field(st.floats(0.5, 2), st.floats(-1, 12)),
    "ignore_eos": st.booleans(),
}
CHAT = bodies(
    {"messages": field(MESSAGES, st.lists(MESSAGES, max_size=0))},
    {
        **COMMON,
        "max_completion_tokens": field(st.integers(1, 12), st.integers(-2, 40)),
        "logprobs": st.booleans(),
        "top_logprobs": field(st.integers(0, 5), st.integers(-2, 8)),
    },
)
COMPLETION = bodies(
    {
        "prompt": field(
            st.one_of(TEXT, st.lists(TEXT, min_size=1, max_size=2), IDS, st.lists(IDS, max_size=2)),
            st.one_of(BAD_IDS, st.lists(BAD_IDS, max_size=2)),
        )
    },
    {
        **COMMON,
        "echo": st.booleans(),
        "logprobs": field(st.integers(0, 5), st.integers(-2, 8)),
    },
)
FUZZ = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def check(server, envelope, path: str, body: dict) -> None:
    status, headers, raw = server.request("POST", path, json.dumps(body).encode())
    assert status in (200, 400, 404, 422), (status, raw, body)
    assert b"Traceback" not in raw
    if status != 200:
        assert envelope(raw)["type"] == TYPES[status], (raw, body)
        return
    if headers.get("content-type", "").startswith("text/event-stream"):
        events = [e for e in raw.decode().split("\n\n") if e]
        assert events[-1] == "data: [DONE]", events
        for event in events[:-1]:
            chunk = json.loads(event.removeprefix("data: "))
            assert "error" not in chunk, (chunk, body)
            assert chunk["object"] in ("chat.completion.chunk", "text_completion")
        return
    answer = json.loads(raw)
    assert answer["choices"] and set(answer["usage"]) == {
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
    }
    for choice in answer["choices"]:
        assert choice["finish_reason"] in ("stop", "length"), (choice, body)


@FUZZ
@given(body=CHAT)
def test_chat_requests_never_fail_the_server(server, envelope, body):
    check(server, envelope, "/v1/chat/completions", body)


@FUZZ
@given(body=COMPLETION)
def test_completion_requests_never_fail_the_server(server, envelope, body):
    check(server, envelope, "/v1/completions", body)


def test_the_fuzzing_logged_no_server_error(server):
    assert " ERROR " not in server.stderr, server.stderr[-3000:]
