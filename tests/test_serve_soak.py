"""Overload soak, bounded to seconds: at several times capacity every request gets an answer
(success, or shed with 429), none is lost or left hanging, memory stays flat, and the server is
back to an empty queue right after."""

from __future__ import annotations

import math
import time

import httpx
import pytest

from coderig.bench.attack import AttackConfig, run_attack
from coderig.bench.report import summarize
from coderig.bench.workload import WorkloadSpec
from tests.support.server import start_server

pytestmark = pytest.mark.e2e


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_overload_soak_answers_every_request_and_recovers(tmp_path):
    server = start_server(
        tmp_path, "--replicas", "2", "--threads-per-replica", "1", "--max-queue-wait", "300ms",
        "--no-access-log",
    )  # fmt: skip
    try:
        pids = [server.process.pid] + [r["pid"] for r in server.ready_info()["replicas"]]
        body = b'{"prompt": "def parse(text):\\n", "max_tokens": 12, "ignore_eos": true}'
        # Capacity on this machine, now: a burst of 4 (2 per replica) and how fast it is served.
        burst = AttackConfig(
            url=f"{server.base_url}/completions",
            rate=1000,
            requests=4,
            timeout=120.0,
            workload=WorkloadSpec(body=body),
        )
        _, served = run_attack(burst)
        assert [r["status"] for r in served] == [200] * 4
        capacity = 4 / (max(r["end"] for r in served) - min(r["sent"] for r in served))
        rss_before = {pid: rss_kib(pid) for pid in pids}
        # Four times that for 8 s (and at least 30 requests/s): most of it must be shed.
        rate = max(30, math.ceil(4 * capacity))
        config = AttackConfig(
            url=f"{server.base_url}/completions",
            rate=rate,
            duration=8.0,
            timeout=120.0,
            workload=WorkloadSpec(body=body),
        )
        header, results = run_attack(config)
        summary = summarize(header, results)
        codes = summary["status_codes"]
        sent = summary["requests"]
        assert sent == len(results) == rate * 8
        assert set(codes) <= {"200", "429"}, codes  # nothing lost: no timeouts, resets, 5xx
        assert codes.get("200", 0) + codes.get("429", 0) == sent
        assert codes.get("429", 0) > sent / 2  # most of the overload was shed, at once
        assert codes.get("200", 0) >= 4
        for pid in pids:
            grown_mib = (rss_kib(pid) - rss_before[pid]) / 1024
            assert grown_mib < 100, f"pid {pid} grew {grown_mib:.0f} MiB during the soak"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            replicas = server.ready_info()["replicas"]
            if all(r["active"] == 0 and r["queued"] == 0 for r in replicas):
                break
            time.sleep(0.2)
        assert all(r["active"] == 0 and r["queued"] == 0 for r in replicas)
        after = httpx.post(
            f"{server.base_url}/completions", json={"prompt": "x = ", "max_tokens": 2}, timeout=60
        )
        assert after.status_code == 200
        metrics = httpx.get(f"{server.url}/metrics").text
        assert 'coderig_shed_requests_total{reason="queue_wait"}' in metrics
    finally:
        server.stop()
