"""Admission control: beyond the queue bound, or the queue-wait bound, a request is refused at
once with 429 and Retry-After, and the admitted ones still succeed."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.support.server import start_server

pytestmark = pytest.mark.e2e

LONG = {"prompt": "def main():\n", "max_tokens": 250, "ignore_eos": True, "temperature": 0}


def post_in_background(url: str, body: dict, results: list) -> threading.Thread:
    def run() -> None:
        results.append(httpx.post(url, json=body, timeout=180))

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def wait_until(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def replica(server) -> dict:
    return server.ready_info()["replicas"][0]


def test_a_full_queue_answers_429_at_once_and_admitted_requests_succeed(tmp_path):
    server = start_server(tmp_path, "--slots", "1", "--max-queue", "1", "--max-queue-wait", "off")
    try:
        url = f"{server.base_url}/completions"
        results: list = []
        running = post_in_background(url, LONG, results)
        wait_until(lambda: replica(server)["active"] == 1)
        queued = post_in_background(url, {**LONG, "max_tokens": 5}, results)
        wait_until(lambda: replica(server)["queued"] == 1)
        started = time.monotonic()
        refused = httpx.post(url, json={"prompt": "x", "max_tokens": 5}, timeout=60)
        assert time.monotonic() - started < 2.0  # refused at once, not after the queue drains
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) >= 1
        error = refused.json()["error"]
        assert error["code"] == "server_overloaded" and "full" in error["message"]
        running.join(120)
        queued.join(120)
        assert [r.status_code for r in results] == [200, 200]
        metrics = httpx.get(f"{server.url}/metrics").text
        assert 'coderig_shed_requests_total{reason="queue_full"} 1.0' in metrics
    finally:
        server.stop()


def test_a_request_that_would_wait_too_long_is_refused_before_it_waits(tmp_path):
    server = start_server(tmp_path, "--slots", "1", "--max-queue-wait", "0.5s")
    try:
        url = f"{server.base_url}/completions"
        # One finished long request teaches the gateway this replica's service time (seconds).
        assert httpx.post(url, json=LONG, timeout=180).status_code == 200
        results: list = []
        running = post_in_background(url, LONG, results)
        wait_until(lambda: replica(server)["active"] == 1)
        started = time.monotonic()
        refused = httpx.post(url, json={"prompt": "x", "max_tokens": 5}, timeout=60)
        assert time.monotonic() - started < 2.0
        assert refused.status_code == 429
        assert "wait more than 0.5s" in refused.json()["error"]["message"]
        assert int(refused.headers["retry-after"]) >= 1
        running.join(120)
        assert results[0].status_code == 200
        # Once the replica is free again, the same request is admitted.
        assert httpx.post(url, json={"prompt": "x", "max_tokens": 5}, timeout=60).status_code == 200
    finally:
        server.stop()
