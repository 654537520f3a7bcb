"""The http reward against a real HTTP server on 127.0.0.1: what it sends, what it reads back,
retries when the server is busy, and a clear error for each way a server can fail."""

from __future__ import annotations

import socket

import pytest
from martlet.errors import ConfigError, MartletError
from martlet_rewards.remote import HttpReward


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    monkeypatch.setattr(HttpReward, "pause", 0.01)


def call(reward, completions=("ab", "", "abcd"), **columns):
    prompts = [[{"role": "user", "content": "q"}]] * len(completions)
    return reward(
        prompts=prompts, completions=list(completions), completion_ids=[[1]] * len(completions),
        trainer_state=object(), **columns,
    )  # fmt: skip


def test_posts_prompts_completions_and_columns_and_reads_the_rewards(reward_server):
    reward = HttpReward(reward_url=reward_server.url, reward_api_key="k-123")
    assert call(reward, solution=["1", "2", "3"], source=("a", "b", "c")) == [2.0, None, 4.0]
    (sent,) = reward_server.requests
    assert sent["completions"] == ["ab", "", "abcd"]
    assert sent["prompts"] == [[{"role": "user", "content": "q"}]] * 3
    # the dataset's columns, and nothing the trainer adds (completion_ids, trainer_state)
    assert sent["columns"] == {"solution": ["1", "2", "3"], "source": ["a", "b", "c"]}
    assert reward_server.headers[0]["Authorization"] == "Bearer k-123"
    assert reward_server.headers[0]["Content-Type"] == "application/json"


def test_the_api_key_comes_from_the_environment(reward_server, monkeypatch):
    monkeypatch.setenv("MARTLET_REWARD_API_KEY", "from-env")
    call(HttpReward(reward_url=reward_server.url))
    assert reward_server.headers[0]["Authorization"] == "Bearer from-env"
    monkeypatch.delenv("MARTLET_REWARD_API_KEY")
    call(HttpReward(reward_url=reward_server.url))
    assert "Authorization" not in reward_server.headers[1]


def test_a_busy_server_is_tried_again(reward_server):
    reward_server.answers = [
        (429, {"Retry-After": "0"}, {"error": "slow down"}),
        (503, {}, b"starting"),
    ]
    assert call(HttpReward(reward_url=reward_server.url, reward_retries=2)) == [2.0, None, 4.0]
    assert len(reward_server.requests) == 3


def test_a_server_busy_for_longer_than_the_retries_is_an_error(reward_server):
    reward_server.answers = [(503, {}, b"overloaded")] * 3
    with pytest.raises(MartletError) as err:
        call(HttpReward(reward_url=reward_server.url, reward_retries=2))
    assert "answered 503" in err.value.what and "after 3 tries" in err.value.what
    assert err.value.why == "overloaded" and "--reward-retries" in err.value.fix
    assert len(reward_server.requests) == 3


def test_another_error_status_is_not_retried(reward_server):
    reward_server.answers = [(500, {}, b"Traceback: boom")]
    with pytest.raises(MartletError, match="answered 500") as err:
        call(HttpReward(reward_url=reward_server.url))
    assert "boom" in err.value.why and len(reward_server.requests) == 1


def test_a_server_that_cannot_be_reached():
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    reward = HttpReward(reward_url=f"http://127.0.0.1:{port}/reward", reward_retries=1)
    with pytest.raises(MartletError, match="cannot reach the reward server") as err:
        call(reward)
    assert "tried 2 times" in err.value.why and "start the server" in err.value.fix


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"rewards": [1, 2]}, "answered 2 rewards for 3 completions"),
        ({"rewards": [1, "high", 2]}, "answered 'high' for completion 1, not a number"),
        ({"rewards": [1, True, 2]}, "answered True for completion 1, not a number"),
        ({"scores": [1, 2, 3]}, "answered no list of rewards"),
        ([1, 2, 3], "answered no list of rewards"),
        (b"<html>oops</html>", "did not answer JSON"),
        (b'{"rewards": [1, NaN, 2]}', "answered nan for completion 1"),
    ],
)
def test_a_wrong_answer_is_an_error_saying_what_it_was(reward_server, payload, message):
    reward_server.answers = [(200, {}, payload)]
    with pytest.raises(MartletError, match=message):
        call(HttpReward(reward_url=reward_server.url))


def test_the_url_is_required_and_checked():
    with pytest.raises(ConfigError, match="needs --reward-url"):
        HttpReward()
    from martlet_rewards.options import HttpOptions

    with pytest.raises(ConfigError, match="is not an http"):
        HttpOptions(reward_url="ftp://x")
    with pytest.raises(ConfigError, match="--reward-retries must be 0 or more"):
        HttpOptions(reward_retries=-1)
