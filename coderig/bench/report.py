"""Turn results into text: vegeta's text/json/hist reports plus an LLM block.

Python API::

    from coderig.bench.metrics import Metrics
    from coderig.bench.report import render_text, render_json, render_hist, parse_buckets
    metrics = Metrics.of(header, results)     # every figure, typed, seconds as floats
    print(render_text(metrics), end="")       # vegeta's block + TTFT/ITL/tokens/lag
    print(render_hist(results, parse_buckets("[0,100ms,1s]")), end="")

Measuring is :mod:`coderig.bench.metrics` (what each figure means is defined there); this
module only formats. The text and histogram reports are vegeta's byte for byte, so they go
through our own ports of Go's ``text/tabwriter`` and ``time.Duration`` printing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from coderig.bench.metrics import Distribution, Metrics, TokenCounts, histogram, sent_latencies
from coderig.bench.results import nan_to_null
from coderig.bench.tabwriter import tabwrite
from coderig.units import go_duration_string, parse_duration, vegeta_duration

NAN = float("nan")


def summarize(header: dict, results: Sequence[dict]) -> dict[str, Any]:
    """The summary as plain data, keyed as the JSON report is (NaN where undefined): for
    scripts that store or index it. Code that reads figures should use :class:`Metrics`."""
    return Metrics.of(header, results).to_dict()


def _lat(d: Distribution, keys: Sequence[str]) -> str:
    return ", ".join(vegeta_duration(getattr(d, k)) for k in keys)


LATENCY_KEYS = ("min", "mean", "p50", "p90", "p95", "p99", "max")


def render_text(m: Metrics) -> str:
    """vegeta's text report, byte for byte, followed by a blank line and the LLM block."""
    text = (
        f"Requests\t[total, rate, throughput]\t{m.requests}, {m.rate:.2f}, {m.throughput:.2f}\n"
        f"Duration\t[total, attack, wait]\t{vegeta_duration(m.total_duration)}, "
        f"{vegeta_duration(m.duration)}, {vegeta_duration(m.wait)}\n"
        f"Latencies\t[min, mean, 50, 90, 95, 99, max]\t{_lat(m.latencies, LATENCY_KEYS)}\n"
        f"Bytes In\t[total, mean]\t{m.bytes_in.total}, {_f2(m.bytes_in.mean)}\n"
        f"Bytes Out\t[total, mean]\t{m.bytes_out.total}, {_f2(m.bytes_out.mean)}\n"
        f"Success\t[ratio]\t{_f2(m.success * 100)}%\n"
        "Status Codes\t[code:count]\t"
        + "".join(f"{code}:{count}  " for code, count in m.status_codes.items())
        + "\nError Set:\n"
        + "".join(f"{e}\n" for e in m.errors)
    )
    ct = m.completion_tokens
    tps = m.output_tokens_per_second
    llm = (
        "\n"
        f"TTFT\t[min, mean, 50, 90, 95, 99, max]\t{_lat(m.ttft, LATENCY_KEYS)}\n"
        f"ITL\t[min, mean, 50, 90, 95, 99, max]\t{_lat(m.itl, LATENCY_KEYS)}\n"
        f"TPOT\t[min, mean, 50, 90, 95, 99, max]\t{_lat(m.tpot, LATENCY_KEYS)}\n"
        f"Tokens In\t[total, mean]\t{_tokens(m.prompt_tokens)}\n"
        f"Tokens Out\t[total, mean, source]\t{_tokens(ct)}, {ct.source}\n"
        f"Output Tok/s\t[run, mean, 50]\t{_f2(tps.run)}, {_f2(tps.per_request.mean)}, "
        f"{_f2(tps.per_request.p50)}\n"
        f"Sched Lag\t[mean, 50, 99, max]\t{_lat(m.sched_lag, ('mean', 'p50', 'p99', 'max'))}\n"
        f"Not Sent\t[max-inflight, ratio]\t{m.not_sent}, {_f2(m.not_sent_ratio * 100)}%\n"
    )
    return tabwrite(text + llm)


def _f2(x: float) -> str:
    return "NaN" if x != x else f"{x:.2f}"


def _tokens(t: TokenCounts) -> str:
    if not t.n:
        return "n/a, n/a"
    return f"{t.total}, {t.mean:.2f}"


def render_json(m: Metrics) -> str:
    """The metrics as one JSON object; NaN (undefined) becomes null."""
    return json.dumps(nan_to_null(m.to_dict()), indent=None) + "\n"


def parse_buckets(text: str) -> list[float]:
    """vegeta's bucket syntax ``[0,100ms,1s]`` (bounds in seconds; 0 is prepended if missing)."""
    text = text.strip()
    if text.startswith("hist"):
        text = text[4:]
    if len(text) < 2 or text[0] != "[" or text[-1] != "]":
        raise ValueError(f"bad buckets: {text!r}: use the form [0,10ms,100ms,1s]")
    bounds: list[float] = []
    for i, part in enumerate(text[1:-1].split(",")):
        d = parse_duration(part.strip())
        if i == 0 and d > 0:
            bounds.append(0.0)
        bounds.append(d)
    if sorted(bounds) != bounds:
        raise ValueError(f"bad buckets: {text!r}: bounds must increase")
    return bounds


def render_hist(results: Sequence[dict], bounds: Sequence[float]) -> str:
    """``vegeta report -type=hist[...]`` over the latency of every sent request."""
    lats = sent_latencies(results)
    counts = histogram(lats, bounds)
    total = len(lats)
    labels = [go_duration_string(round(b * 1e9)) for b in bounds]
    lines = ["Bucket\t\t#\t%\tHistogram\n"]
    for i, count in enumerate(counts):
        ratio = count / total if total else NAN
        hi = labels[i + 1] if i < len(bounds) - 1 else "+Inf"
        pad = "#" * int(ratio * 75) if total else ""
        lines.append(f"[{labels[i]},\t{hi}]\t{count}\t{_f2(ratio * 100)}%\t{pad}\n")
    return tabwrite("".join(lines))
