"""Cancellation: a client that disconnects stops the generation on the replica within a few
tokens, for streaming and non-streaming requests, and the next request starts promptly."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.support.engine import tokens_generated, wait_until_idle
from tests.support.server import start_server

pytestmark = pytest.mark.e2e

LONG = {"prompt": "def main():\n", "max_tokens": 1000, "ignore_eos": True, "temperature": 0}


@pytest.fixture(scope="module")
def cancel_server(tmp_path_factory):
    running = start_server(tmp_path_factory.mktemp("cancel"))
    yield running
    running.stop()


def replica_url(server) -> str:
    return server.ready_info()["replicas"][0]["url"]


def counter_sum(server, name: str) -> float:
    metrics = httpx.get(f"{server.url}/metrics").text
    total = 0.0
    for line in metrics.splitlines():
        if line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def cancelled(server) -> float:
    return counter_sum(server, "coderig_cancelled_requests_total")


def tokens_saved(server) -> float:
    """Tokens asked for but not yet received by the gateway when the request was cancelled."""
    return counter_sum(server, "coderig_cancelled_tokens_saved_total")


def assert_generation_stopped(server, generated_before: float, received: int) -> None:
    url = replica_url(server)
    wait_until_idle(url)  # the engine released the slot...
    stopped_at = tokens_generated(url) - generated_before
    # ...far short of the 1000 tokens asked for: it stopped near where the client left.
    assert received <= stopped_at < received + 100
    time.sleep(1.0)
    assert tokens_generated(url) - generated_before == stopped_at  # and it stays stopped


def assert_next_request_starts_promptly(server) -> None:
    started = time.monotonic()
    first_token_after = None
    with httpx.stream(
        "POST",
        f"{server.base_url}/completions",
        json={"prompt": "x = ", "max_tokens": 3, "stream": True},
        timeout=60,
    ) as response:
        for line in response.iter_lines():  # read to the end: leaving early is a cancellation
            if line.startswith("data: {") and first_token_after is None:
                first_token_after = time.monotonic() - started
    # Well under the ~10 s the abandoned 1000-token generation would still have taken.
    assert first_token_after is not None and first_token_after < 5.0


def test_closing_a_stream_stops_generation(cancel_server):
    server = cancel_server
    generated_before = tokens_generated(replica_url(server))
    cancelled_before = cancelled(server)
    with httpx.stream(
        "POST", f"{server.base_url}/completions", json={**LONG, "stream": True}, timeout=60
    ) as response:
        chunks = 0
        for line in response.iter_lines():
            if line.startswith("data: {"):
                chunks += 1
            if chunks == 10:
                break
    assert_generation_stopped(server, generated_before, received=10)
    assert cancelled(server) == cancelled_before + 1
    assert_next_request_starts_promptly(server)
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'coderig_cancelled_requests_total{reason="client",route="completions"}' in metrics


def test_a_non_streaming_client_that_gives_up_stops_generation(cancel_server):
    server = cancel_server
    generated_before = tokens_generated(replica_url(server))
    cancelled_before = cancelled(server)
    saved_before = tokens_saved(server)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{server.base_url}/completions", json=LONG, timeout=httpx.Timeout(60, read=1.5))
    wait_until_idle(replica_url(server))
    # The gateway was reading the replica's stream while the client waited for the whole body:
    # what it had received when the client left is what the engine should stop near.
    received = LONG["max_tokens"] - (tokens_saved(server) - saved_before)
    assert 1 <= received < LONG["max_tokens"]
    assert_generation_stopped(server, generated_before, received=int(received))
    assert cancelled(server) == cancelled_before + 1
    assert_next_request_starts_promptly(server)
    metrics = httpx.get(f"{server.url}/metrics").text
    assert "coderig_cancelled_tokens_saved_total" in metrics
    assert 'coderig_requests_total{route="completions",status="499"}' in metrics
