"""Sweep: a table per rate, plots as PNG and one self-contained HTML page, and an SLO search."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from coderig.bench.attack import AttackConfig
from coderig.bench.sweep import run_sweep

try:  # the repository's tests/ is a package on main, a plain directory in a worktree
    from tests.bench_helpers.fixtures import llm_server  # noqa: F401  (pytest fixture)
except ImportError:
    from bench_helpers.fixtures import llm_server  # noqa: F401  (pytest fixture)

ROOT = Path(__file__).resolve().parents[1]


def test_sweep_over_a_rate_list_writes_table_plots_and_html(llm_server, tmp_path):  # noqa: F811
    url = f"{llm_server}/v1/completions?delay=0.01&tokens=4&interval=0.002"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "coderig",
            "bench",
            "sweep",
            "--url",
            url,
            "--rates",
            "5,20",
            "--duration",
            "1s",
            "--stream",
            "--pause",
            "0",
            "--out-dir",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    table = [line for line in done.stdout.splitlines() if line.startswith("│")]
    assert [line.split("│")[1].strip() for line in table] == ["5", "20"]
    for name in ("latency-vs-rate.png", "latency-cdf.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (tmp_path / "sweep.html").read_text()
    assert page.count('src="data:image/png;base64,') == 2
    assert "<script" not in page and 'src="http' not in page and "<link" not in page
    assert "<td>20</td>" in page
    steps = json.loads((tmp_path / "sweep.json").read_text())["steps"]
    assert [s["summary"]["requests"] for s in steps] == [5, 20]
    assert (tmp_path / "rate-20.jsonl").exists()


def measured_capacity(url: str, n: int = 10) -> float:
    """Requests/s the serial fake server completes back to back, on this machine, now."""
    import time
    import urllib.request

    started = time.monotonic()
    for _ in range(n):
        request = urllib.request.Request(url, data=b"{}", method="POST")
        urllib.request.urlopen(request, timeout=10).read()
    return n / (time.monotonic() - started)


def test_slo_search_finds_the_knee_of_a_single_server_queue(llm_server):  # noqa: F811
    # one request at a time, 20 ms each plus whatever this machine adds: capacity ~50 req/s;
    # above it the queue (and p99) grows. The bounds come from the capacity measured here.
    url = f"{llm_server}/v1/completions?serial=1&delay=0.02"
    capacity = measured_capacity(url)
    sweep = run_sweep(
        AttackConfig(url=url, rate=1, duration=0.7),
        slo=0.15,
        percentile=99,
        min_rate=math.ceil(capacity / 2),  # the search starts a doubling below the knee
        max_rate=256,
        steps=1,
        pause=0.1,
    )
    tried = {s.rate: s for s in sweep.steps}
    # the search went past the knee, and 1.5x capacity for 0.7 s (a backlog of 0.35 s of
    # work) puts p99 far past the SLO
    assert any(not s.meets_slo for s in tried.values())
    assert all(not s.meets_slo for r, s in tried.items() if r > 1.5 * capacity)
    assert sweep.best_rate is not None and capacity / 4 <= sweep.best_rate < 1.5 * capacity
    assert tried[sweep.best_rate].summary.latencies.p99 <= 0.15
    # every rate above the best one that was tried missed: the answer is the knee
    assert all(not s.meets_slo for r, s in tried.items() if r > sweep.best_rate)
