"""A replica that dies mid-request: the request ends with a 503 at once, the replica comes
back, and the next request succeeds."""

from __future__ import annotations

import os
import signal
import threading
import time

import httpx
import openai
import pytest

from tests.support.server import start_server

pytestmark = pytest.mark.e2e

LONG = {"prompt": "def main():\n", "max_tokens": 600, "ignore_eos": True, "temperature": 0}


@pytest.fixture(scope="module")
def fragile_server(tmp_path_factory):
    running = start_server(tmp_path_factory.mktemp("fragile"), "--threads-per-replica", "2")
    yield running
    running.stop()


def wait_for(predicate, timeout: float, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def busy_replica(server) -> dict | None:
    replicas = server.ready_info()["replicas"]
    return next((r for r in replicas if r["active"] == 1), None)


def test_killed_replica_fails_its_request_with_503_and_comes_back(fragile_server):
    server = fragile_server
    result: dict = {}

    def call() -> None:
        started = time.monotonic()
        response = httpx.post(f"{server.url}/v1/completions", json=LONG, timeout=120)
        result["response"] = response
        result["ended"] = time.monotonic()
        result["started"] = started

    thread = threading.Thread(target=call)
    thread.start()
    replica = wait_for(lambda: busy_replica(server), timeout=30)
    time.sleep(0.3)  # mid-generation
    killed_at = time.monotonic()
    os.kill(replica["pid"], signal.SIGKILL)
    thread.join(60)
    response = result["response"]
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "replica_failed"
    assert response.headers["retry-after"] == "1"
    # Ends promptly on the kill, not after a generation's worth of time or a timeout.
    assert result["ended"] - killed_at < 5.0

    info = server.wait_ready(timeout=60)
    assert info["replicas"][0]["restarts"] == 1
    assert info["replicas"][0]["pid"] != replica["pid"]
    again = httpx.post(
        f"{server.url}/v1/completions", json={"prompt": "x = ", "max_tokens": 3}, timeout=60
    )
    assert again.status_code == 200
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'coderig_replica_restarts_total{replica="replica-0"} 1.0' in metrics
    assert 'coderig_requests_total{route="completions",status="503"} 1.0' in metrics


def test_killed_replica_ends_a_stream_with_an_in_band_error(fragile_server):
    server = fragile_server
    server.wait_ready(timeout=60)
    client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0, timeout=60)
    stream = client.completions.create(
        model="smollm2-135m-instruct",
        stream=True,
        **{k: v for k, v in LONG.items() if k != "ignore_eos"},
        extra_body={"ignore_eos": True},
    )
    first = next(iter(stream))
    assert first.choices[0].text is not None
    replica = server.ready_info()["replicas"][0]
    os.kill(replica["pid"], signal.SIGKILL)
    killed_at = time.monotonic()
    with pytest.raises(openai.APIError, match="replica-0 failed"):
        for _ in stream:
            pass
    assert time.monotonic() - killed_at < 5.0
    server.wait_ready(timeout=60)
    ok = client.completions.create(model="smollm2-135m-instruct", prompt="y = ", max_tokens=2)
    assert ok.choices[0].text is not None


def test_requests_while_no_replica_is_ready_get_503_not_a_hang(fragile_server):
    server = fragile_server
    server.wait_ready(timeout=60)
    replica = server.ready_info()["replicas"][0]
    os.kill(replica["pid"], signal.SIGKILL)
    wait_for(lambda: server.ready_info()["ready"] is False, timeout=10)
    started = time.monotonic()
    response = httpx.post(
        f"{server.url}/v1/completions", json={"prompt": "z", "max_tokens": 2}, timeout=30
    )
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "no_replica_available"
    assert time.monotonic() - started < 2.0
    assert httpx.get(f"{server.url}/ready").status_code == 503
    server.wait_ready(timeout=60)
