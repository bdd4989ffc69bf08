"""Cancellation: a client that disconnects stops the generation on the replica within a few
tokens, for streaming and non-streaming requests, and the next request starts promptly."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.support.server import start_server

pytestmark = pytest.mark.e2e

LONG = {"prompt": "def main():\n", "max_tokens": 1000, "ignore_eos": True, "temperature": 0}


@pytest.fixture(scope="module")
def cancel_server(tmp_path_factory):
    running = start_server(tmp_path_factory.mktemp("cancel"))
    yield running
    running.stop()


def replica_stats(server) -> dict:
    url = server.ready_info()["replicas"][0]["url"]
    return httpx.get(f"{url}/coderig/stats", timeout=5).json()


def wait_for_generation_to_stop(server, timeout: float = 15.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = replica_stats(server)
        if not stats["busy"]:
            return stats
        time.sleep(0.1)
    raise AssertionError("the replica kept generating after the client left")


def assert_generation_stopped(server, tokens_at_disconnect: int) -> None:
    stats = wait_for_generation_to_stop(server)
    stopped_at = stats["tokens_generated"]
    # Far fewer than the 1000 asked for: it stopped near where the client left.
    assert stopped_at - tokens_at_disconnect < 100
    time.sleep(1.0)
    assert replica_stats(server)["tokens_generated"] == stopped_at  # and it stays stopped


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
    before = replica_stats(server)
    with httpx.stream(
        "POST", f"{server.base_url}/completions", json={**LONG, "stream": True}, timeout=60
    ) as response:
        chunks = 0
        for line in response.iter_lines():
            if line.startswith("data: {"):
                chunks += 1
            if chunks == 10:
                break
    tokens_at_disconnect = replica_stats(server)["tokens_generated"]
    assert_generation_stopped(server, tokens_at_disconnect)
    assert replica_stats(server)["cancelled"] == before["cancelled"] + 1
    assert_next_request_starts_promptly(server)
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'coderig_cancelled_requests_total{reason="client",route="completions"}' in metrics


def test_a_non_streaming_client_that_gives_up_stops_generation(cancel_server):
    server = cancel_server
    before = replica_stats(server)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{server.base_url}/completions", json=LONG, timeout=httpx.Timeout(60, read=1.5))
    tokens_at_disconnect = replica_stats(server)["tokens_generated"]
    assert_generation_stopped(server, tokens_at_disconnect)
    assert replica_stats(server)["cancelled"] == before["cancelled"] + 1
    assert_next_request_starts_promptly(server)
    metrics = httpx.get(f"{server.url}/metrics").text
    assert "coderig_cancelled_tokens_saved_total" in metrics
    assert 'coderig_requests_total{route="completions",status="499"}' in metrics
