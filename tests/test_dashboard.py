"""The Grafana dashboard reads only what the gateway exports, and `coderig top` shows the same
figures in a terminal (checked on a captured screen, and once against a real gateway)."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from importlib.resources import files

import httpx
import pytest
from click.testing import CliRunner
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console

from coderig.cli import main
from coderig.serve.metrics import GatewayMetrics
from coderig.top import Scrape, compute_view, histogram_quantile, render
from tests.support.server import start_server

SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
PROMQL_WORDS = {"sum", "by", "rate", "increase", "histogram_quantile", "le", "label_values"}


def dashboard() -> dict:
    return json.loads(files("coderig.serve").joinpath("data", "grafana-dashboard.json").read_text())


def exported() -> dict[str, set[str]]:
    """Every series name the gateway can export -> its label names."""
    names: dict[str, set[str]] = {}
    metrics = GatewayMetrics()
    for collector in list(metrics.registry._collector_to_names):  # noqa: SLF001
        labels = set(getattr(collector, "_labelnames", ()))
        for family in collector.describe():
            for suffix in SUFFIXES.get(family.type, ("",)):
                names[family.name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return names


def queries() -> list[str]:
    found = [t["expr"] for p in dashboard()["panels"] for t in p["targets"]]
    found += [v["definition"] for v in dashboard()["templating"]["list"] if "definition" in v]
    return found


def test_every_panel_query_names_only_metrics_and_labels_the_gateway_exports():
    known = exported()
    checked = 0
    for expr in queries():
        for name in re.findall(r"\b(coderig_[a-z_]+)", expr):
            assert name in known, f"{name} in {expr!r} is not exported by the gateway"
            checked += 1
        for group in re.findall(r"by \(([^)]*)\)", expr):
            used = {label.strip() for label in group.split(",")}
            names = re.findall(r"\b(coderig_[a-z_]+)", expr)
            assert any(used <= known[n] | {"le"} for n in names), f"{used} in {expr!r}"
    assert checked >= 30


def test_the_dashboard_covers_what_an_operator_looks_for():
    titles = " | ".join(p["title"].lower() for p in dashboard()["panels"])
    for topic in ("route and status", "latency", "first token", "queue", "shed", "cancelled",
                  "cache hit", "tokens/s", "per key", "replicas"):  # fmt: skip
        assert topic in titles, topic
    ids = [p["id"] for p in dashboard()["panels"]]
    assert len(ids) == len(set(ids))


def test_serve_prints_the_dashboard_and_the_scrape_config():
    runner = CliRunner()
    printed = runner.invoke(main, ["serve", "--print-dashboard"])
    assert printed.exit_code == 0 and json.loads(printed.output) == dashboard()
    scrape = runner.invoke(main, ["serve", "--print-scrape-config"])
    assert scrape.exit_code == 0
    assert "scrape_configs:" in scrape.output and "metrics_path: /metrics" in scrape.output


def test_histogram_quantile_interpolates_like_prometheus():
    buckets = {0.1: 0.0, 0.5: 10.0, 1.0: 20.0, math.inf: 20.0}
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.5)
    assert histogram_quantile(0.75, buckets) == pytest.approx(0.75)
    assert histogram_quantile(0.99, {1.0: 1.0, math.inf: 3.0}) == 1.0  # +Inf: last finite bound
    assert math.isnan(histogram_quantile(0.5, {1.0: 0.0, math.inf: 0.0}))


def _scrape(metrics: GatewayMetrics, at: float) -> Scrape:
    return Scrape.parse(generate_latest(metrics.registry).decode(), at)


def test_top_shows_rates_percentiles_replicas_and_keys_on_screen():
    metrics = GatewayMetrics()
    metrics.replica_up.labels("replica-0").set(1)
    metrics.replica_up.labels("replica-1").set(0)
    metrics.in_flight.labels("replica-0").set(3)
    metrics.queued.labels("replica-0").set(2)
    before = _scrape(metrics, at=100.0)
    for _ in range(8):
        metrics.requests.labels("completions", "200").inc()
        metrics.request_duration.labels("completions").observe(0.4)
        metrics.time_to_first_token.labels("completions").observe(0.05)
    metrics.requests.labels("completions", "429").inc(2)
    metrics.shed.labels("queue_wait").inc(2)
    metrics.prompt_tokens.inc(1000)
    metrics.prompt_cached_tokens.inc(750)
    metrics.completion_tokens.inc(160)
    metrics.key_requests.labels("alice").inc(10)
    metrics.key_tokens.labels("alice").inc(1160)
    view = compute_view(before, _scrape(metrics, at=102.0))
    assert view.requests_per_s == {"200": 4.0, "429": 1.0}
    assert 0.25 < view.latency[0] <= 0.5  # in the bucket holding 0.4 s
    assert view.shed_per_s == 1.0 and view.cache_hit_rate == 0.75
    assert view.generated_per_s == 80.0
    assert view.keys == [("alice", 5.0, 1160 / 2 * 60)]
    console = Console(record=True, width=120)
    console.print(render(view, "http://127.0.0.1:8000"))
    screen = console.export_text()
    for shown in ("5.00", "200 4.00, 429 1.00", "75%", "replica-0", "replica-1", "down",
                  "alice", "34800"):  # fmt: skip
        assert shown in screen, shown


def test_every_metric_the_view_reads_is_exported():
    source = files("coderig").joinpath("top.py").read_text()
    known = exported()
    for name in set(re.findall(r'"(coderig_[a-z_]+)"', source)):
        assert name in known or f"{name}_bucket" in known, name


@pytest.mark.e2e
def test_top_once_against_a_real_gateway(tmp_path):
    server = start_server(tmp_path)
    try:
        body = {"prompt": "def f():", "max_tokens": 4}
        assert httpx.post(f"{server.base_url}/completions", json=body, timeout=60).is_success
        done = subprocess.run(
            [sys.executable, "-m", "coderig", "top", server.url, "--once", "--interval", "1s"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "replica-0" in done.stdout and "up" in done.stdout
        families = {f.name for f in text_string_to_metric_families(
            httpx.get(f"{server.url}/metrics").text
        )}  # fmt: skip
        assert "coderig_replica_requests_queued" in families
    finally:
        server.stop()
