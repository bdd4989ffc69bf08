"""Turn results into numbers: vegeta's text/json/hist reports plus an LLM block.

Python API::

    from coderig.bench.report import summarize, render_text, render_json, render_hist
    summary = summarize(header, results)      # plain dict, every figure, seconds as floats
    print(render_text(summary), end="")       # vegeta's block + TTFT/ITL/tokens/lag
    print(render_hist(results, parse_buckets("[0,100ms,1s]")), end="")

Definitions follow vegeta's ``lib/metrics.go`` so the vegeta block means what vegeta's means:
``Requests[total]`` counts *sent* requests, ``rate`` is sent/(last send − first send),
``throughput`` is successes/(that span + wait), ``wait`` is last response end − last send,
latency is end − send for every sent request, failed ones included (a timeout counts its
full timeout). One deliberate difference: a request whose status is 2xx/3xx but whose body
carried an error (a stream that broke, an ``error`` event) is not a success.

Percentiles are exact, computed with linear interpolation between order statistics
(numpy's default, the same as ``pandas.Series.quantile``), not vegeta's t-digest estimate.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from coderig.bench.tabwriter import tabwrite
from coderig.units import go_duration_string, parse_duration, vegeta_duration

NAN = float("nan")
PERCENTILES = (50, 90, 95, 99)


def distribution(values: Sequence[float]) -> dict[str, float]:
    """min/mean/percentiles/max of ``values`` (all NaN when there are none)."""
    if len(values) == 0:
        return {
            "n": 0,
            "min": NAN,
            "mean": NAN,
            **{f"{p}th": NAN for p in PERCENTILES},
            "max": NAN,
            "total": 0.0,
        }
    arr = np.asarray(values, dtype=float)
    pct = np.percentile(arr, PERCENTILES)
    out: dict[str, float] = {"n": int(arr.size), "min": float(arr.min()), "mean": float(arr.mean())}
    out.update({f"{p}th": float(v) for p, v in zip(PERCENTILES, pct, strict=True)})
    out["max"] = float(arr.max())
    out["total"] = float(arr.sum())
    return out


def is_success(r: dict) -> bool:
    """2xx/3xx like vegeta, and no error recorded while reading the body."""
    return 200 <= r["status"] < 400 and not r["error"]


def summarize(header: dict, results: Sequence[dict]) -> dict[str, Any]:
    """Every figure of the report as a plain dict (seconds as floats; NaN when undefined)."""
    sent = [r for r in results if not r.get("not_sent") and r["sent"] is not None]
    not_sent = len(results) - len(sent)
    n = len(sent)
    ok = [r for r in sent if is_success(r)]
    s: dict[str, Any] = {"requests": n, "scheduled": len(results), "not_sent": not_sent}
    if n:
        earliest = min(r["sent"] for r in sent)
        latest = max(r["sent"] for r in sent)
        end = max(r["end"] if r["end"] is not None else r["sent"] for r in sent)
    else:
        earliest = latest = end = 0.0
    duration, wait = latest - earliest, max(end - latest, 0.0)
    rate, throughput = float(n), float(len(ok))
    if duration > 0:
        rate /= duration
        throughput /= duration + wait
    latencies = [r["end"] - r["sent"] for r in sent if r["end"] is not None]
    codes: dict[str, int] = {}
    errors: list[str] = []
    seen: set[str] = set()
    for r in sent:
        codes[str(r["status"])] = codes.get(str(r["status"]), 0) + 1
        if r["error"] and r["error"] not in seen:
            seen.add(r["error"])
            errors.append(r["error"])
    bytes_in = sum(r["bytes_in"] for r in sent)
    bytes_out = sum(r["bytes_out"] for r in sent)
    s.update(
        earliest=earliest,
        latest=latest,
        end=end,
        duration=duration,
        wait=wait,
        total_duration=duration + wait,
        rate=rate,
        throughput=throughput,
        latencies=distribution(latencies),
        bytes_in={"total": bytes_in, "mean": bytes_in / n if n else NAN},
        bytes_out={"total": bytes_out, "mean": bytes_out / n if n else NAN},
        success=len(ok) / n if n else NAN,
        status_codes=dict(sorted(codes.items())),
        errors=errors,
    )
    s.update(_llm_figures(sent, ok, duration + wait))
    s["not_sent_ratio"] = not_sent / len(results) if results else NAN
    s["sched_lag"] = distribution([r["sent"] - r["scheduled"] for r in sent])
    s["attack"] = {
        k: header.get(k)
        for k in (
            "name",
            "url",
            "rate",
            "duration",
            "requests",
            "arrival",
            "stream",
            "max_inflight",
            "prompt_tokens",
            "max_tokens",
            "fim",
            "tags",
            "start_iso",
        )
    }
    return s


def _llm_figures(sent: list[dict], ok: list[dict], total_duration: float) -> dict[str, Any]:
    ttft = [r["first_token"] - r["sent"] for r in sent if r.get("first_token") is not None]
    itl: list[float] = []
    tpot: list[float] = []
    for r in sent:
        times = r.get("token_times") or []
        itl.extend(b - a for a, b in zip(times, times[1:], strict=False))
        tokens = r.get("completion_tokens")
        if r.get("first_token") is not None and tokens and tokens > 1 and r["end"] is not None:
            tpot.append((r["end"] - r["first_token"]) / (tokens - 1))
    prompt = [r["prompt_tokens"] for r in ok if r.get("prompt_tokens") is not None]
    completion = [r["completion_tokens"] for r in ok if r.get("completion_tokens") is not None]
    sources = {r.get("tokens_from") for r in ok if r.get("tokens_from")}
    per_request = [
        r["completion_tokens"] / (r["end"] - r["sent"])
        for r in ok
        if r.get("completion_tokens") and r["end"] is not None and r["end"] > r["sent"]
    ]
    total_out = sum(completion)
    return {
        "ttft": distribution(ttft),
        "itl": distribution(itl),
        "tpot": distribution(tpot),
        "prompt_tokens": {"total": sum(prompt), "mean": _mean(prompt), "n": len(prompt)},
        "completion_tokens": {
            "total": total_out,
            "mean": _mean(completion),
            "n": len(completion),
            "source": "mixed" if len(sources) > 1 else (sources.pop() if sources else "none"),
        },
        "output_tokens_per_second": {
            "run": total_out / total_duration if total_duration > 0 and completion else NAN,
            "per_request": distribution(per_request),
        },
    }


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else NAN


def _lat(d: dict[str, float], keys: Sequence[str]) -> str:
    return ", ".join(vegeta_duration(d[k]) for k in keys)


LATENCY_KEYS = ("min", "mean", "50th", "90th", "95th", "99th", "max")


def render_text(s: dict[str, Any]) -> str:
    """vegeta's text report, byte for byte, followed by a blank line and the LLM block."""
    lat = s["latencies"]
    text = (
        f"Requests\t[total, rate, throughput]\t{s['requests']}, {s['rate']:.2f}, "
        f"{s['throughput']:.2f}\n"
        f"Duration\t[total, attack, wait]\t{vegeta_duration(s['total_duration'])}, "
        f"{vegeta_duration(s['duration'])}, {vegeta_duration(s['wait'])}\n"
        f"Latencies\t[min, mean, 50, 90, 95, 99, max]\t{_lat(lat, LATENCY_KEYS)}\n"
        f"Bytes In\t[total, mean]\t{s['bytes_in']['total']}, {_f2(s['bytes_in']['mean'])}\n"
        f"Bytes Out\t[total, mean]\t{s['bytes_out']['total']}, {_f2(s['bytes_out']['mean'])}\n"
        f"Success\t[ratio]\t{_f2(s['success'] * 100)}%\n"
        "Status Codes\t[code:count]\t"
        + "".join(f"{code}:{count}  " for code, count in s["status_codes"].items())
        + "\nError Set:\n"
        + "".join(f"{e}\n" for e in s["errors"])
    )
    pt, ct = s["prompt_tokens"], s["completion_tokens"]
    tps = s["output_tokens_per_second"]
    lag = s["sched_lag"]
    llm = (
        "\n"
        f"TTFT\t[min, mean, 50, 90, 95, 99, max]\t{_lat(s['ttft'], LATENCY_KEYS)}\n"
        f"ITL\t[min, mean, 50, 90, 95, 99, max]\t{_lat(s['itl'], LATENCY_KEYS)}\n"
        f"TPOT\t[min, mean, 50, 90, 95, 99, max]\t{_lat(s['tpot'], LATENCY_KEYS)}\n"
        f"Tokens In\t[total, mean]\t{_tokens(pt)}\n"
        f"Tokens Out\t[total, mean, source]\t{_tokens(ct)}, {ct['source']}\n"
        f"Output Tok/s\t[run, mean, 50]\t{_f2(tps['run'])}, {_f2(tps['per_request']['mean'])}, "
        f"{_f2(tps['per_request']['50th'])}\n"
        f"Sched Lag\t[mean, 50, 99, max]\t{_lat(lag, ('mean', '50th', '99th', 'max'))}\n"
        f"Not Sent\t[max-inflight, ratio]\t{s['not_sent']}, {_f2(s['not_sent_ratio'] * 100)}%\n"
    )
    return tabwrite(text + llm)


def _f2(x: float) -> str:
    return "NaN" if x != x else f"{x:.2f}"


def _tokens(d: dict[str, Any]) -> str:
    if not d["n"]:
        return "n/a, n/a"
    return f"{d['total']}, {d['mean']:.2f}"


def render_json(s: dict[str, Any]) -> str:
    """The summary as one JSON object; NaN (undefined) becomes null."""
    return json.dumps(_nan_to_none(s), indent=None) + "\n"


def _nan_to_none(x: Any) -> Any:
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_nan_to_none(v) for v in x]
    return x


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


def histogram(latencies: Sequence[float], bounds: Sequence[float]) -> list[int]:
    """Counts per bucket ``[b[i], b[i+1])``; the last bucket is ``[b[-1], +Inf)``."""
    counts = [0] * len(bounds)
    for lat in latencies:
        i = 0
        while i < len(bounds) - 1 and not (bounds[i] <= lat < bounds[i + 1]):
            i += 1
        counts[i] += 1
    return counts


def render_hist(results: Sequence[dict], bounds: Sequence[float]) -> str:
    """``vegeta report -type=hist[...]`` over the latency of every sent request."""
    lats = [
        r["end"] - r["sent"]
        for r in results
        if not r.get("not_sent") and r["sent"] is not None and r["end"] is not None
    ]
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
