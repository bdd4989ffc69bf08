"""What an attack measured, as one typed object: vegeta's ``Metrics`` plus the LLM figures.

Measuring lives here, formatting in :mod:`coderig.bench.report`: :meth:`Metrics.of` reads the
result lines once, and the text report, the JSON report, the sweep table and its plots all read
the :class:`Metrics` it returns. Plain dicts appear only at the JSON edge (:meth:`Metrics.to_dict`,
whose keys are the ``report --type json`` object's).

Definitions follow vegeta's ``lib/metrics.go`` so the vegeta block means what vegeta's means:
``requests`` counts *sent* requests, ``rate`` is sent/(last send − first send), ``throughput``
is successes/(that span + wait), ``wait`` is last response end − last send, latency is
end − send for every sent request, failed ones included (a timeout counts its full timeout).
One deliberate difference: a request whose status is 2xx/3xx but whose body carried an error
(a stream that broke, an ``error`` event) is not a success.

Percentiles are exact, computed with linear interpolation between order statistics (numpy's
default, the same as ``pandas.Series.quantile``), not vegeta's t-digest estimate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "ATTACK_KEYS",
    "PERCENTILES",
    "ByteCounts",
    "Distribution",
    "Metrics",
    "OutputRate",
    "TokenCounts",
    "histogram",
    "is_success",
    "sent_latencies",
]

NAN = float("nan")
PERCENTILES = (50, 90, 95, 99)
#: The header fields a summary repeats, so a JSON report says which attack it describes.
ATTACK_KEYS = (
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


@dataclass(frozen=True)
class Distribution:
    """Count, min, mean, p50/p90/p95/p99, max and sum of a set of values (seconds, or tokens per
    second); every figure but ``n`` and ``total`` is NaN when the set is empty."""

    n: int
    min: float
    mean: float
    p50: float
    p90: float
    p95: float
    p99: float
    max: float
    total: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Distribution:
        if len(values) == 0:
            return cls(0, NAN, NAN, NAN, NAN, NAN, NAN, NAN, 0.0)
        arr = np.asarray(values, dtype=float)
        p50, p90, p95, p99 = (float(v) for v in np.percentile(arr, PERCENTILES))
        return cls(
            n=int(arr.size),
            min=float(arr.min()),
            mean=float(arr.mean()),
            p50=p50,
            p90=p90,
            p95=p95,
            p99=p99,
            max=float(arr.max()),
            total=float(arr.sum()),
        )

    def percentile(self, p: int) -> float:
        """The ``p``-th percentile, for ``p`` in :data:`PERCENTILES` (an SLO names one)."""
        if p not in PERCENTILES:
            raise ValueError(f"percentile must be one of {PERCENTILES}, got {p}")
        return getattr(self, f"p{p}")

    def to_dict(self) -> dict[str, float]:
        return {
            "n": self.n,
            "min": self.min,
            "mean": self.mean,
            **{f"{p}th": self.percentile(p) for p in PERCENTILES},
            "max": self.max,
            "total": self.total,
        }


@dataclass(frozen=True)
class ByteCounts:
    """Bytes over the sent requests: the sum and the mean per request (NaN with none sent)."""

    total: int
    mean: float

    def to_dict(self) -> dict[str, Any]:
        return {"total": self.total, "mean": self.mean}


@dataclass(frozen=True)
class TokenCounts:
    """Tokens of the successful requests that reported them: sum, mean, and how many reported.

    ``source`` says where completion counts came from (``usage``, ``chunks``, ``mixed``,
    ``none``); prompt counts have none (None).
    """

    total: int
    mean: float
    n: int
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"total": self.total, "mean": self.mean, "n": self.n}
        if self.source is not None:
            out["source"] = self.source
        return out


@dataclass(frozen=True)
class OutputRate:
    """Output tokens per second: over the whole attack (``run``), and per successful request."""

    run: float
    per_request: Distribution

    def to_dict(self) -> dict[str, Any]:
        return {"run": self.run, "per_request": self.per_request.to_dict()}


@dataclass(frozen=True)
class Metrics:
    """Every figure of an attack's report; times in seconds, NaN where undefined."""

    # -- vegeta's Metrics -----------------------------------------------------------------------
    requests: int  # sent
    scheduled: int  # sent + not sent
    not_sent: int  # skipped at max-inflight
    earliest: float  # first send
    latest: float  # last send
    end: float  # last response end
    duration: float  # latest - earliest (vegeta's "attack")
    wait: float  # end - latest
    rate: float
    throughput: float
    latencies: Distribution
    bytes_in: ByteCounts
    bytes_out: ByteCounts
    success: float
    status_codes: dict[str, int]  # "200" -> count, sorted by code
    errors: list[str]  # distinct, in order of first appearance
    # -- the LLM's figures ---------------------------------------------------------------------
    ttft: Distribution
    itl: Distribution
    tpot: Distribution
    prompt_tokens: TokenCounts
    completion_tokens: TokenCounts
    output_tokens_per_second: OutputRate
    # -- the load generator's own honesty ---------------------------------------------------------
    not_sent_ratio: float
    sched_lag: Distribution
    attack: dict[str, Any]  # the header's ATTACK_KEYS, as the results file had them

    @property
    def total_duration(self) -> float:
        """Attack plus wait: the span successes are counted over (vegeta's ``total``)."""
        return self.duration + self.wait

    @classmethod
    def of(cls, header: dict, results: Sequence[dict]) -> Metrics:
        """The metrics of one attack's header and result lines (docs/results-format.md)."""
        sent = [r for r in results if not r.get("not_sent") and r["sent"] is not None]
        not_sent = len(results) - len(sent)
        n = len(sent)
        ok = [r for r in sent if is_success(r)]
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
        codes: dict[str, int] = {}
        for r in sent:
            codes[str(r["status"])] = codes.get(str(r["status"]), 0) + 1
        bytes_in = sum(r["bytes_in"] for r in sent)
        bytes_out = sum(r["bytes_out"] for r in sent)
        return cls(
            requests=n,
            scheduled=len(results),
            not_sent=not_sent,
            earliest=earliest,
            latest=latest,
            end=end,
            duration=duration,
            wait=wait,
            rate=rate,
            throughput=throughput,
            latencies=Distribution.of(sent_latencies(sent)),
            bytes_in=ByteCounts(bytes_in, bytes_in / n if n else NAN),
            bytes_out=ByteCounts(bytes_out, bytes_out / n if n else NAN),
            success=len(ok) / n if n else NAN,
            status_codes=dict(sorted(codes.items())),
            errors=list(dict.fromkeys(r["error"] for r in sent if r["error"])),
            **_llm_figures(sent, ok, duration + wait),
            not_sent_ratio=not_sent / len(results) if results else NAN,
            sched_lag=Distribution.of([r["sent"] - r["scheduled"] for r in sent]),
            attack={k: header.get(k) for k in ATTACK_KEYS},
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON report's object (NaN still NaN: the writer turns it into null)."""
        return {
            "requests": self.requests,
            "scheduled": self.scheduled,
            "not_sent": self.not_sent,
            "earliest": self.earliest,
            "latest": self.latest,
            "end": self.end,
            "duration": self.duration,
            "wait": self.wait,
            "total_duration": self.total_duration,
            "rate": self.rate,
            "throughput": self.throughput,
            "latencies": self.latencies.to_dict(),
            "bytes_in": self.bytes_in.to_dict(),
            "bytes_out": self.bytes_out.to_dict(),
            "success": self.success,
            "status_codes": dict(self.status_codes),
            "errors": list(self.errors),
            "ttft": self.ttft.to_dict(),
            "itl": self.itl.to_dict(),
            "tpot": self.tpot.to_dict(),
            "prompt_tokens": self.prompt_tokens.to_dict(),
            "completion_tokens": self.completion_tokens.to_dict(),
            "output_tokens_per_second": self.output_tokens_per_second.to_dict(),
            "not_sent_ratio": self.not_sent_ratio,
            "sched_lag": self.sched_lag.to_dict(),
            "attack": dict(self.attack),
        }


def is_success(r: dict) -> bool:
    """2xx/3xx like vegeta, and no error recorded while reading the body."""
    return 200 <= r["status"] < 400 and not r["error"]


def sent_latencies(results: Sequence[dict]) -> list[float]:
    """End − send of every request that was sent and ended (failed ones included)."""
    return [
        r["end"] - r["sent"]
        for r in results
        if not r.get("not_sent") and r["sent"] is not None and r["end"] is not None
    ]


def histogram(latencies: Sequence[float], bounds: Sequence[float]) -> list[int]:
    """Counts per bucket ``[b[i], b[i+1])``; the last bucket is ``[b[-1], +Inf)`` and, as in
    vegeta's ``Histogram.Add``, also takes what falls below ``b[0]`` (and NaN)."""
    if not len(bounds):
        return []
    index = np.searchsorted(np.asarray(bounds, dtype=float), latencies, side="right") - 1
    index[index < 0] = len(bounds) - 1
    return np.bincount(index, minlength=len(bounds)).tolist()


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
        "ttft": Distribution.of(ttft),
        "itl": Distribution.of(itl),
        "tpot": Distribution.of(tpot),
        "prompt_tokens": TokenCounts(sum(prompt), _mean(prompt), len(prompt)),
        "completion_tokens": TokenCounts(
            total_out,
            _mean(completion),
            len(completion),
            source="mixed" if len(sources) > 1 else (sources.pop() if sources else "none"),
        ),
        "output_tokens_per_second": OutputRate(
            run=total_out / total_duration if total_duration > 0 and completion else NAN,
            per_request=Distribution.of(per_request),
        ),
    }


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else NAN
