"""Shared by the benchmark scripts: machine facts, a server to attack, and its metrics."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.server import RunningServer, start_server  # noqa: E402


def machine_line() -> str:
    cpu = subprocess.run(
        ["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    load = os.getloadavg()[0]
    return (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {platform.machine()}, {cpu}, "
        f"{len(os.sched_getaffinity(0))} cores; python {platform.python_version()}; "
        f"load average at start {load:.2f}"
    )


def serve(*args: str) -> RunningServer:
    """A `coderig serve` on the embedded model, logs in a fresh temporary directory."""
    return start_server(Path(tempfile.mkdtemp(prefix="coderig-bench-")), *args)


def metric_values(server: RunningServer) -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics as {(name, sorted labels): value}."""
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def metric(values: dict, name: str, **labels: str) -> float:
    wanted = tuple(sorted(labels.items()))
    return sum(v for (n, ls), v in values.items() if n == name and set(wanted) <= set(ls))
