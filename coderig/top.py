"""``coderig top URL``: the dashboard's figures, live in a terminal, for a team without Grafana.

It scrapes the gateway's ``/metrics`` every ``--interval`` and shows what changed since the
previous scrape — request rate by status, latency and time-to-first-token percentiles (from the
histograms' bucket increments, interpolated as Prometheus' ``histogram_quantile`` does), queues
and replica states, shed and cancelled requests, prompt-cache hit rate, tokens/s, and per-key
usage — the same queries as the Grafana dashboard (``coderig serve --print-dashboard``).
"""

from __future__ import annotations

import math
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field

import click
import httpx
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from coderig.cli_types import DURATION

Labels = tuple[tuple[str, str], ...]


@dataclass
class Scrape:
    """One ``/metrics`` read: sample name -> labels -> value, and when it was taken."""

    at: float
    samples: dict[str, dict[Labels, float]] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str, at: float) -> Scrape:
        samples: dict[str, dict[Labels, float]] = defaultdict(dict)
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples[sample.name][tuple(sorted(sample.labels.items()))] = sample.value
        return cls(at, dict(samples))

    def total(self, name: str, **match: str) -> float:
        return sum(v for labels, v in self.samples.get(name, {}).items() if _matches(labels, match))

    def by(self, name: str, label: str, **match: str) -> dict[str, float]:
        out: dict[str, float] = defaultdict(float)
        for labels, value in self.samples.get(name, {}).items():
            if _matches(labels, match):
                out[dict(labels).get(label, "")] += value
        return dict(out)


def _matches(labels: Labels, match: dict[str, str]) -> bool:
    have = dict(labels)
    return all(have.get(k) == v for k, v in match.items())


def histogram_quantile(q: float, buckets: dict[float, float]) -> float:
    """Prometheus' estimate from cumulative bucket counts (upper bound -> count): linear
    interpolation inside the bucket the rank falls in; NaN without observations."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return math.nan
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower  # in the +Inf bucket: the highest finite bound
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 0.0)
        lower, below = bound, count
    return lower


def _bucket_increase(prev: Scrape, cur: Scrape, metric: str) -> dict[float, float]:
    """Per upper bound, observations added between the scrapes (all label sets summed)."""

    def cumulative(scrape: Scrape) -> dict[float, float]:
        out: dict[float, float] = defaultdict(float)
        for labels, value in scrape.samples.get(f"{metric}_bucket", {}).items():
            out[float(dict(labels)["le"])] += value
        return out

    before, after = cumulative(prev), cumulative(cur)
    return {le: max(0.0, after[le] - before.get(le, 0.0)) for le in after}


@dataclass
class View:
    """What the screen shows: rates over the last interval, levels as of the last scrape."""

    seconds: float
    requests_per_s: dict[str, float]  # by status
    latency: tuple[float, float]  # p50, p99 of full responses
    ttft: tuple[float, float]
    queue_wait_p99: float
    shed_per_s: float
    cancelled_per_s: float
    cache_hit_rate: float
    generated_per_s: float
    prompt_per_s: float
    replicas: list[tuple[str, bool, float, float, float]]  # name, up, in flight, queued, restarts
    keys: list[tuple[str, float, float]]  # name, requests/s, tokens/min


def compute_view(prev: Scrape, cur: Scrape) -> View:
    dt = max(cur.at - prev.at, 1e-9)

    def rate(name: str, **match: str) -> float:
        return max(0.0, cur.total(name, **match) - prev.total(name, **match)) / dt

    def rate_by(name: str, label: str) -> dict[str, float]:
        before = prev.by(name, label)
        return {k: max(0.0, v - before.get(k, 0.0)) / dt for k, v in cur.by(name, label).items()}

    def quantiles(metric: str, *qs: float) -> tuple[float, ...]:
        buckets = _bucket_increase(prev, cur, metric)
        return tuple(histogram_quantile(q, buckets) for q in qs)

    prompt = rate("coderig_prompt_tokens_total")
    cached = rate("coderig_prompt_cached_tokens_total")
    up = cur.by("coderig_replica_up", "replica")
    in_flight = cur.by("coderig_replica_requests_in_flight", "replica")
    queued = cur.by("coderig_replica_requests_queued", "replica")
    restarts = cur.by("coderig_replica_restarts_total", "replica")
    key_requests = rate_by("coderig_key_requests_total", "key")
    key_tokens = rate_by("coderig_key_tokens_total", "key")
    return View(
        seconds=dt,
        requests_per_s=rate_by("coderig_requests_total", "status"),
        latency=quantiles("coderig_request_duration_seconds", 0.5, 0.99),  # type: ignore[arg-type]
        ttft=quantiles("coderig_time_to_first_token_seconds", 0.5, 0.99),  # type: ignore[arg-type]
        queue_wait_p99=quantiles("coderig_queue_wait_seconds", 0.99)[0],
        shed_per_s=rate("coderig_shed_requests_total"),
        cancelled_per_s=rate("coderig_cancelled_requests_total"),
        cache_hit_rate=cached / prompt if prompt > 0 else math.nan,
        generated_per_s=rate("coderig_completion_tokens_total"),
        prompt_per_s=prompt,
        replicas=[
            (
                name,
                up[name] >= 1,
                in_flight.get(name, 0.0),
                queued.get(name, 0.0),
                restarts.get(name, 0.0),
            )
            for name in sorted(up)
        ],
        keys=sorted(
            ((k, key_requests.get(k, 0.0), key_tokens.get(k, 0.0) * 60) for k in key_requests),
            key=lambda row: -row[2],
        ),
    )


def _seconds(x: float) -> str:
    return "-" if math.isnan(x) else f"{x * 1000:.0f} ms" if x < 1 else f"{x:.2f} s"


def _percent(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.0%}"


def render(view: View, url: str) -> Group:
    total = sum(view.requests_per_s.values())
    statuses = ", ".join(
        f"{status} {rate:.2f}" for status, rate in sorted(view.requests_per_s.items()) if rate > 0
    )
    head = Text.assemble(("coderig top ", "bold"), (url, "cyan"), f"  (last {view.seconds:.1f} s)")
    figures = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    for column in ("req/s", "latency p50", "p99", "TTFT p50", "p99", "queue wait p99"):
        figures.add_column(column, justify="right")
    figures.add_row(
        f"{total:.2f}",
        _seconds(view.latency[0]),
        _seconds(view.latency[1]),
        _seconds(view.ttft[0]),
        _seconds(view.ttft[1]),
        _seconds(view.queue_wait_p99),
    )
    flow = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    for column in ("by status", "shed/s", "cancelled/s", "cache hit", "gen tok/s", "prompt tok/s"):
        flow.add_column(column, justify="right")
    flow.add_row(
        statuses or "-",
        f"{view.shed_per_s:.2f}",
        f"{view.cancelled_per_s:.2f}",
        _percent(view.cache_hit_rate),
        f"{view.generated_per_s:.1f}",
        f"{view.prompt_per_s:.1f}",
    )
    replicas = Table(title="replicas", title_justify="left", header_style="bold")
    for column in ("replica", "state", "in flight", "queued", "restarts"):
        replicas.add_column(column, justify="left" if column in ("replica", "state") else "right")
    for name, up, running, waiting, restarts in view.replicas:
        replicas.add_row(
            name,
            Text("up", "green") if up else Text("down", "red"),
            f"{running:.0f}",
            f"{waiting:.0f}",
            f"{restarts:.0f}",
        )
    parts = [head, figures, flow, replicas]
    if view.keys:
        keys = Table(title="keys", title_justify="left", header_style="bold")
        keys.add_column("key")
        keys.add_column("req/s", justify="right")
        keys.add_column("tokens/min", justify="right")
        for name, requests, tokens in view.keys:
            keys.add_row(name, f"{requests:.2f}", f"{tokens:.0f}")
        parts.append(keys)
    return Group(*parts)


def scrape(client: httpx.Client, url: str) -> Scrape:
    response = client.get(f"{url}/metrics")
    if response.status_code == 401:
        raise click.ClickException(
            f"{url}/metrics needs a key (--protect-metrics): set CODERIG_API_KEY"
        )
    response.raise_for_status()
    return Scrape.parse(response.text, time.monotonic())


@click.command()
@click.argument("url", default="http://127.0.0.1:8000")
@click.option(
    "--interval", type=DURATION, default="2s", show_default=True, help="Time between scrapes."
)
@click.option(
    "--once",
    is_flag=True,
    help="Scrape twice, one interval apart, print the view and exit (scripts, CI logs).",
)
def top(url: str, interval: float, once: bool) -> None:
    """A live view of a coderig gateway's /metrics (the key, if needed: $CODERIG_API_KEY)."""
    url = url.rstrip("/").removesuffix("/v1")
    key = os.environ.get("CODERIG_API_KEY")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    console = Console()
    with httpx.Client(headers=headers, timeout=10) as client:
        try:
            previous = scrape(client, url)
        except httpx.HTTPError as exc:
            raise click.ClickException(f"cannot read {url}/metrics: {exc}") from exc
        if once:
            time.sleep(interval)
            console.print(render(compute_view(previous, scrape(client, url)), url))
            return
        with Live(console=console, auto_refresh=False, screen=False) as live:
            try:
                while True:
                    time.sleep(interval)
                    try:
                        current = scrape(client, url)
                    except httpx.HTTPError as exc:  # a restart, a network blip: keep watching
                        live.update(Text(f"cannot read {url}/metrics: {exc}", "red"), refresh=True)
                        continue
                    live.update(render(compute_view(previous, current), url), refresh=True)
                    previous = current
            except KeyboardInterrupt:
                pass
