"""Faults: a stopped (SIGSTOP) replica, a killed gateway, a restarted gateway."""

from __future__ import annotations

import os
import signal
import threading
import time

import httpx
import pytest

from tests.support.server import start_server

pytestmark = pytest.mark.e2e

LONG = {"prompt": "def main():\n", "max_tokens": 400, "ignore_eos": True, "temperature": 0}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead, just not reaped
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_a_stopped_replica_fails_its_requests_with_503_and_is_replaced(tmp_path):
    server = start_server(
        tmp_path, "--replicas", "2", "--threads-per-replica", "1", "--health-check", "0.5s,1s,3"
    )
    try:
        url = f"{server.base_url}/completions"
        results: list = []
        thread = threading.Thread(
            target=lambda: results.append(httpx.post(url, json=LONG, timeout=120))
        )
        thread.start()
        deadline = time.monotonic() + 30
        busy = None
        while busy is None and time.monotonic() < deadline:
            busy = next((r for r in server.ready_info()["replicas"] if r["active"]), None)
            time.sleep(0.05)
        assert busy is not None
        os.kill(busy["pid"], signal.SIGSTOP)
        stopped_at = time.monotonic()
        # Meanwhile the other replica serves new requests.
        assert (
            httpx.post(url, json={"prompt": "y = ", "max_tokens": 2}, timeout=60).status_code == 200
        )
        thread.join(60)
        assert results[0].status_code == 503
        assert results[0].json()["error"]["code"] == "replica_failed"
        assert time.monotonic() - stopped_at < 20  # health checks, not the 120 s stall timeout
        info = server.wait_ready(timeout=60)
        replaced = next(r for r in info["replicas"] if r["name"] == busy["name"])
        deadline = time.monotonic() + 60
        while replaced["state"] != "ready" and time.monotonic() < deadline:
            time.sleep(0.2)
            replaced = next(r for r in server.ready_info()["replicas"] if r["name"] == busy["name"])
        assert replaced["state"] == "ready"
        assert replaced["restarts"] == 1
        assert replaced["pid"] != busy["pid"]
        assert not alive(busy["pid"])
    finally:
        server.stop()


def test_killing_the_gateway_leaves_no_orphan_replicas(tmp_path):
    server = start_server(tmp_path, "--replicas", "2", "--threads-per-replica", "1")
    pids = [r["pid"] for r in server.ready_info()["replicas"]]
    assert all(alive(pid) for pid in pids)
    server.process.kill()  # SIGKILL: no chance to clean up
    server.process.wait()
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in pids)


def test_a_restarted_gateway_keeps_its_keys_and_settings(tmp_path):
    keys = tmp_path / "keys.txt"
    keys.write_text("alice:sk-alice-0123456789\n")
    args = ("--api-keys", str(keys), "--max-tokens-limit", "64")
    headers = {"Authorization": "Bearer sk-alice-0123456789"}
    for _ in range(2):
        server = start_server(tmp_path, *args)
        try:
            ok = httpx.post(
                f"{server.base_url}/completions",
                json={"prompt": "a", "max_tokens": 2},
                headers=headers,
                timeout=60,
            )
            assert ok.status_code == 200
            too_many = httpx.post(
                f"{server.base_url}/completions",
                json={"prompt": "a", "max_tokens": 65},
                headers=headers,
                timeout=60,
            )
            assert too_many.status_code == 400
            assert httpx.get(f"{server.base_url}/models").status_code == 401
        finally:
            server.stop()
