"""`martlet deploy` as a real subprocess on 127.0.0.1, talked to with the official `openai`
client (and raw HTTP where the client hides what is checked): chat, streaming, completions,
log-probabilities, n, stop, seeds, usage, adapters by name, and every error status."""

from __future__ import annotations

import http.client
import json
import math
import re
import time

import openai
import pytest

pytestmark = pytest.mark.slow

HELLO = [{"role": "user", "content": "What is the capital of France?"}]


# ---------------------------------------------------------------------- the happy paths


def test_it_printed_the_url_and_examples_and_answered_503_while_loading(server, envelope):
    assert server.url in server.banner
    printed = "".join(server.out_lines)
    assert f"curl {server.url}/chat/completions" in printed
    assert "from openai import OpenAI" in printed
    assert server.key not in printed  # the key is not shown
    loading = [body for status, body in server.health if status == 503]
    assert loading, server.health  # the server listened before the model had loaded
    assert envelope(loading[0])["code"] == "loading"
    assert server.during_load and server.during_load[0][0] == 503  # every route, not just /health
    assert envelope(server.during_load[0][1])["code"] == "loading"
    assert server.health[-1] == (200, {"status": "ok"})


def test_models_lists_the_base_model_and_each_adapter(server):
    models = server.client().models.list()
    assert [m.id for m in models.data] == ["tiny", "tiny-lora"]
    rows = {m.id: m.model_dump() for m in models.data}
    assert rows["tiny-lora"]["parent"] == "tiny" and rows["tiny"]["parent"] is None
    assert server.client().models.retrieve("tiny-lora").id == "tiny-lora"


def test_chat_answers_and_counts_tokens(server):
    answer = server.client().chat.completions.create(
        model="tiny", messages=HELLO, max_tokens=8, temperature=0
    )
    assert answer.object == "chat.completion" and answer.model == "tiny"
    (choice,) = answer.choices
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert answer.usage.prompt_tokens > 5
    assert 1 <= answer.usage.completion_tokens <= 8
    total = answer.usage.prompt_tokens + answer.usage.completion_tokens
    assert answer.usage.total_tokens == total


def test_the_stream_is_the_same_answer_in_pieces_with_usage_last(server):
    client = server.client()
    whole = client.chat.completions.create(
        model="tiny", messages=HELLO, max_tokens=12, temperature=0
    )
    chunks = list(
        client.chat.completions.create(
            model="tiny",
            messages=HELLO,
            max_tokens=12,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == whole.choices[0].finish_reason and not any(finishes[:-1])
    assert chunks[-1].choices == [] and chunks[-1].usage.model_dump() == whole.usage.model_dump()
    assert all(c.usage is None for c in chunks[:-1])


def test_the_raw_stream_is_server_sent_events_ending_in_done(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    body = {"model": "tiny", "prompt": "Hello", "max_tokens": 4, "stream": True}
    conn.request("POST", "/v1/completions", json.dumps(body), server.headers())
    response = conn.getresponse()
    assert response.status == 200
    assert response.getheader("content-type").startswith("text/event-stream")
    events = [e for e in response.read().decode().split("\n\n") if e]
    conn.close()
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    assert all(json.loads(e[6:])["object"] == "text_completion" for e in events[:-1])


def test_completions_from_text_and_from_token_ids_agree(server, tiny_model_dir):
    from transformers import AutoTokenizer

    client = server.client()
    text = client.completions.create(model="tiny", prompt="Hello", max_tokens=6, temperature=0)
    assert text.object == "text_completion" and text.choices[0].text
    prompt_ids = AutoTokenizer.from_pretrained(tiny_model_dir)("Hello")["input_ids"]
    by_ids = client.completions.create(model="tiny", prompt=prompt_ids, max_tokens=6, temperature=0)
    assert by_ids.choices[0].text == text.choices[0].text
    assert by_ids.usage.prompt_tokens == text.usage.prompt_tokens == len(prompt_ids)
    several = client.completions.create(
        model="tiny", prompt=["Hello", "Hi"], max_tokens=6, temperature=0, n=2
    )
    assert [c.index for c in several.choices] == [0, 1, 2, 3]
    assert several.choices[0].text == several.choices[1].text == text.choices[0].text
    assert several.usage.prompt_tokens == len(prompt_ids) + len(
        AutoTokenizer.from_pretrained(tiny_model_dir)("Hi")["input_ids"]
    )


def test_echo_with_logprobs_scores_the_prompt_as_vllm_does(server):
    client = server.client()
    scored = client.completions.create(
        model="tiny", prompt="The capital of France", max_tokens=0, echo=True, logprobs=2
    )
    (choice,) = scored.choices
    lp = choice.logprobs
    assert choice.text == "The capital of France"
    assert "".join(lp.tokens) == choice.text
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    assert all(v < 0 for v in lp.token_logprobs[1:])
    assert all(1 <= len(top) <= 3 for top in lp.top_logprobs[1:])  # 2 alternatives + itself
    assert lp.text_offset == [sum(len(t) for t in lp.tokens[:i]) for i in range(len(lp.tokens))]
    assert scored.usage.completion_tokens == 0
    with_answer = client.completions.create(
        model="tiny", prompt="The capital of France", max_tokens=3, echo=True, logprobs=1,
        temperature=0,
    )  # fmt: skip
    answer = with_answer.choices[0]
    assert answer.text.startswith("The capital of France")
    assert answer.logprobs.token_logprobs[: len(lp.tokens)][1:] == pytest.approx(
        lp.token_logprobs[1:], abs=1e-4
    )
    assert len(answer.logprobs.tokens) == len(lp.tokens) + with_answer.usage.completion_tokens


def test_chat_logprobs_in_openai_form(server):
    answer = server.client().chat.completions.create(
        model="tiny", messages=HELLO, max_tokens=5, temperature=0, logprobs=True, top_logprobs=3
    )
    content = answer.choices[0].logprobs.content
    assert len(content) == answer.usage.completion_tokens
    for entry in content:
        assert len(entry.top_logprobs) == 3
        assert entry.logprob == pytest.approx(entry.top_logprobs[0].logprob, abs=1e-5)  # greedy
        assert entry.top_logprobs[0].logprob >= entry.top_logprobs[1].logprob
        assert isinstance(entry.bytes, list) and all(0 <= b < 256 for b in entry.bytes)
        assert math.isfinite(entry.logprob)
    joined = b"".join(bytes(e.bytes) for e in content).decode("utf-8", errors="replace")
    assert joined.replace("<|im_end|>", "") == answer.choices[0].message.content
    plain = server.client().chat.completions.create(
        model="tiny", messages=HELLO, max_tokens=5, temperature=0, logprobs=True
    )
    assert all(e.top_logprobs == [] for e in plain.choices[0].logprobs.content)


def test_n_choices_and_seeds(server):
    client = server.client()
    ask = dict(model="tiny", messages=HELLO, max_tokens=8, temperature=1.0, n=3, seed=123)
    first, again = client.chat.completions.create(**ask), client.chat.completions.create(**ask)
    texts = [c.message.content for c in first.choices]
    assert [c.index for c in first.choices] == [0, 1, 2]
    assert texts == [c.message.content for c in again.choices]  # the same seed, the same answers
    assert len(set(texts)) > 1  # but n samples, not one sample n times
    other = client.chat.completions.create(**{**ask, "seed": 124})
    assert [c.message.content for c in other.choices] != texts


def test_stop_strings_cut_the_answer(server):
    client = server.client()
    free = client.completions.create(model="tiny", prompt="Hello", max_tokens=12, temperature=0)
    text = free.choices[0].text
    assert len(text) >= 4
    stop = text[2:4]
    cut = client.completions.create(
        model="tiny", prompt="Hello", max_tokens=12, temperature=0, stop=[stop, "never-seen"]
    )
    assert cut.choices[0].text == text[: text.index(stop)]
    assert cut.choices[0].finish_reason == "stop"
    streamed = client.completions.create(
        model="tiny", prompt="Hello", max_tokens=12, temperature=0, stop=stop, stream=True
    )
    pieces = list(streamed)
    assert "".join(p.choices[0].text for p in pieces) == cut.choices[0].text
    assert pieces[-1].choices[0].finish_reason == "stop"


def test_penalties_change_a_greedy_answer(server):
    client = server.client()
    ask = dict(model="tiny", prompt="Hello", max_tokens=16, temperature=0)
    plain = client.completions.create(**ask).choices[0].text
    penalised = client.completions.create(**ask, frequency_penalty=2.0, presence_penalty=2.0)
    assert penalised.choices[0].text != plain  # greedy repeats itself; the penalty stops it


def test_adapters_are_chosen_by_model_name(server):
    client = server.client()
    ask = dict(messages=HELLO, max_tokens=8, temperature=0)
    base = client.chat.completions.create(model="tiny", **ask).choices[0].message.content
    lora = client.chat.completions.create(model="tiny-lora", **ask)
    assert lora.model == "tiny-lora"
    assert lora.choices[0].message.content != base
    again = client.chat.completions.create(model="tiny", **ask).choices[0].message.content
    assert again == base  # the adapter did not stick to the base model


def test_a_request_without_model_gets_the_base_model(server):
    status, _, body = server.request(
        "POST", "/v1/chat/completions", {"messages": HELLO, "max_tokens": 4, "temperature": 0}
    )
    assert status == 200 and json.loads(body)["model"] == "tiny"


# ---------------------------------------------------------------------- errors


def test_unknown_model_is_404(server, envelope):
    with pytest.raises(openai.NotFoundError) as info:
        server.client().chat.completions.create(model="gpt-4", messages=HELLO)
    error = envelope(info.value.response.content)
    assert error["param"] == "model" and error["code"] == "model_not_found"
    assert "tiny-lora" in error["message"]
    status, _, body = server.request("GET", "/v1/nowhere")
    assert status == 404 and envelope(body)["type"] == "not_found_error"
    status, _, body = server.request("GET", "/v1/chat/completions")
    assert status == 405 and envelope(body)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"max_tokens": 33}, "max_tokens"),
        ({"max_completion_tokens": 0}, "max_completion_tokens"),
        ({"n": 5}, "n"),
        ({"temperature": 2.5}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"presence_penalty": -3}, "presence_penalty"),
        ({"seed": 2**64}, "seed"),
        ({"logprobs": True, "top_logprobs": 6}, "top_logprobs"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"stop": [""]}, "stop"),
        ({"stop": [str(i) for i in range(17)]}, "stop"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "user", "content": "Hi " * 1100}]}, "messages"),
    ],
)
def test_bad_chat_values_are_400_naming_the_field(server, envelope, body, param):
    status, _, answer = server.request(
        "POST", "/v1/chat/completions", {"model": "tiny", "messages": HELLO, **body}
    )
    assert status == 400, answer
    error = envelope(answer)
    assert error["param"] == param and error["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": [1, 2, 100000]}, "prompt"),
        ({"prompt": [[]]}, "prompt"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "x", "logprobs": 6}, "logprobs"),
        ({"prompt": "x", "max_tokens": 0}, "max_tokens"),
        ({"prompt": [1] * 1024}, "prompt"),
    ],
)
def test_bad_completion_values_are_400_naming_the_field(server, envelope, body, param):
    status, _, answer = server.request("POST", "/v1/completions", body)
    assert status == 400, answer
    assert envelope(answer)["param"] == param


def test_a_prompt_near_the_context_has_its_answer_clipped(server):
    status, _, answer = server.request(
        "POST", "/v1/completions", {"prompt": [5] * 1020, "max_tokens": 32, "temperature": 0}
    )
    assert status == 200, answer
    data = json.loads(answer)
    assert data["usage"]["completion_tokens"] <= 4
    assert data["choices"][0]["finish_reason"] in ("length", "stop")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{not json", None),
        (b"[1, 2]", None),
        (b'{"messages": [{"role": "user", "content": "hi"}], "temperature": NaN}', None),
        (b'{"messages": [{"role": "user", "content": "\\ud800"}]}', None),
        (json.dumps({"messages": HELLO, "n": "2"}).encode(), "n"),
        (json.dumps({"messages": HELLO, "tools": []}).encode(), "tools"),
        (json.dumps({"messages": [{"role": "robot", "content": "x"}]}).encode(),
         "messages.0.role"),
        (json.dumps({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}).encode(),
         "messages.0.content"),
        (json.dumps({"model": "tiny"}).encode(), "messages"),
    ],
)  # fmt: skip
def test_bodies_of_the_wrong_shape_are_422(server, envelope, body, param):
    status, _, answer = server.request("POST", "/v1/chat/completions", body)
    assert status == 422, answer
    assert envelope(answer)["param"] == param


# ---------------------------------------------------------------------- authentication


ROUTES = [
    ("GET", "/v1/models"),
    ("GET", "/v1/models/tiny"),
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/completions"),
    ("GET", "/openapi.json"),
    ("GET", "/v1/nowhere"),
]


def test_every_route_but_health_needs_the_key(server, envelope):
    for method, path in ROUTES:
        status, headers, body = server.request(method, path, b"{}", auth=False)
        assert status == 401, (method, path, body)
        assert headers.get("www-authenticate") == "Bearer"
        assert envelope(body)["type"] == "authentication_error"
        wrong = {"Authorization": "Bearer sk-wrong"}
        status, _, body = server.request(method, path, b"{}", auth=False, headers=wrong)
        assert status == 401 and "neither" in envelope(body)["message"]
    status, _, body = server.request("GET", "/health", auth=False)
    assert status == 200 and json.loads(body) == {"status": "ok"}
    with pytest.raises(openai.AuthenticationError):
        server.client(api_key="sk-wrong").models.list()


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"exp": -60}, "expired"),
        ({"aud": "someone-else"}, "audience"),
        ({"nbf": 600}, "not valid yet"),
        ({"exp": None}, "'exp'"),
        ({"key": "another-secret-that-is-at-least-32-bytes"}, "signature"),
    ],
)
def test_a_bad_jwt_is_401_with_the_reason(server, envelope, jwt_token, claims, reason):
    # times are offsets from now, applied when the test runs (not when it is collected: the
    # suite once ran more than ten minutes after collection and the 'future' token was valid)
    now = int(time.time())
    claims = {k: now + v if k in ("exp", "nbf") and v is not None else v for k, v in claims.items()}
    bearer = {"Authorization": f"Bearer {jwt_token(**claims)}"}
    status, _, body = server.request("GET", "/v1/models", auth=False, headers=bearer)
    assert status == 401
    error = envelope(body)
    assert reason in error["message"] and error["code"] == "invalid_token"


def test_a_valid_jwt_is_accepted_beside_the_key(server, jwt_token):
    client = server.client(api_key=jwt_token())
    answer = client.chat.completions.create(model="tiny", messages=HELLO, max_tokens=2)
    assert answer.choices[0].message.content is not None


def test_the_openapi_document_describes_the_request_bodies(server):
    status, _, body = server.request("GET", "/openapi.json")
    document = json.loads(body)
    assert status == 200
    assert {"/v1/chat/completions", "/v1/completions", "/v1/models", "/health"} <= set(
        document["paths"]
    )
    chat = document["paths"]["/v1/chat/completions"]["post"]["requestBody"]
    assert chat["content"]["application/json"]["schema"]["$ref"].endswith("ChatCompletionRequest")
    schemas = document["components"]["schemas"]
    refs = set(re.findall(r"#/components/schemas/(\w+)", body.decode()))
    assert refs <= set(schemas)  # every reference resolves
    assert "messages" in schemas["ChatCompletionRequest"]["required"]
