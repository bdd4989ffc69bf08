"""The report must read exactly like vegeta's: checked against Go's own formatting.

``bench_helpers/go_reference.txt`` was printed by ``go_reference.go`` (Go's ``time`` and
``text/tabwriter``, with vegeta's rounding rule and format strings); if ``go`` is installed
the test regenerates it instead of trusting the file.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import pytest

from coderig.bench.metrics import (
    ByteCounts,
    Distribution,
    Metrics,
    OutputRate,
    TokenCounts,
    histogram,
)
from coderig.bench.report import parse_buckets, render_hist, render_json, render_text, summarize
from coderig.bench.tabwriter import tabwrite
from coderig.units import go_duration_string, vegeta_duration

HELPERS = Path(__file__).parent / "bench_helpers"


def _reference() -> str:
    if shutil.which("go"):
        done = subprocess.run(
            ["go", "run", "go_reference.go"],
            cwd=HELPERS,
            capture_output=True,
            text=True,
            timeout=120,
            env={
                "GOFLAGS": "-mod=mod",
                "HOME": "/tmp",
                "GOCACHE": "/tmp/gocache",
                "PATH": "/usr/bin:/bin:/usr/local/bin",
                "GO111MODULE": "off",
            },
        )
        if done.returncode == 0:
            return done.stdout
    return (HELPERS / "go_reference.txt").read_text()


@pytest.fixture(scope="module")
def reference() -> tuple[list[tuple[int, str, str]], str, str]:
    text = _reference()
    head, _, hist = text.partition("----\n")
    lines = head.splitlines()
    durations = []
    report_lines = []
    for line in lines:
        parts = line.split(" ")
        if len(parts) == 3 and parts[0].isdigit():
            durations.append((int(parts[0]), parts[1], parts[2]))
        else:
            report_lines.append(line)
    return durations, "\n".join(report_lines) + "\n", hist


def test_durations_print_as_go_and_vegeta_print_them(reference):
    durations, _, _ = reference
    assert len(durations) > 20
    for ns, go_string, vegeta_string in durations:
        assert go_duration_string(ns) == go_string, ns
        assert vegeta_duration(ns / 1e9) == vegeta_string, ns


def _summary_like_vegeta_readme() -> Metrics:
    """Metrics holding the exact figures the Go reference program formats."""
    lat = Distribution(
        n=1200,
        min=0.090438129,
        mean=0.113172398,
        p50=0.108272568,
        p90=0.13,
        p95=0.14018235,
        p99=0.247771566,
        max=1.264815246,
        total=0.0,
    )
    empty = Distribution.of([])
    return Metrics(
        requests=1200,
        scheduled=1200,
        not_sent=0,
        earliest=0.0,
        latest=9.949883921,
        end=10.094965987,
        duration=9.949883921,
        wait=0.145082066,
        rate=120.0,
        throughput=65.87,
        latencies=lat,
        bytes_in=ByteCounts(3714690, 3095.57),
        bytes_out=ByteCounts(0, 0.0),
        success=0.5542,
        status_codes={"0": 535, "200": 665},
        errors=["Get http://localhost:6060: dial tcp 127.0.0.1:6060: connection refused"],
        ttft=empty,
        itl=empty,
        tpot=empty,
        prompt_tokens=TokenCounts(0, math.nan, 0),
        completion_tokens=TokenCounts(0, math.nan, 0, source="none"),
        output_tokens_per_second=OutputRate(run=math.nan, per_request=empty),
        not_sent_ratio=0.0,
        sched_lag=empty,
        attack={},
    )


def test_text_report_vegeta_block_is_byte_identical_to_go(reference):
    _, go_block, _ = reference
    text = render_text(_summary_like_vegeta_readme())
    vegeta_part = text.split("\n\n")[0] + "\n"
    assert vegeta_part == go_block
    # and the LLM block follows, after one blank line, with its own aligned columns
    llm = text.split("\n\n")[1]
    assert llm.splitlines()[0].startswith("TTFT          [min, mean, 50, 90, 95, 99, max]  NaN")


def test_histogram_is_byte_identical_to_go(reference):
    _, _, go_hist = reference
    bounds = parse_buckets("[0,2ms,4ms,100ms]")
    lat = [0.001] * 6007 + [0.003] * 5505 + [0.05]
    results = [{"sent": 1.0, "end": 1.0 + x, "not_sent": False} for x in lat]
    assert render_hist(results, bounds) == go_hist


def test_tabwriter_aligns_columns_only_within_consecutive_blocks():
    text = "a\tb\tc\nlonger\tb\tc\nbreak\nx\ty\n"
    assert tabwrite(text) == "a       b  c\nlonger  b  c\nbreak\nx  y\n"


def test_buckets_follow_vegeta_syntax():
    assert parse_buckets("[0,100ms,1s,5s]") == [0.0, 0.1, 1.0, 5.0]
    assert parse_buckets("hist[10ms,1s]") == [0.0, 0.01, 1.0]  # 0 prepended like vegeta
    with pytest.raises(ValueError, match="bad buckets"):
        parse_buckets("0,1s")
    assert histogram([0.0, 0.05, 0.1, 2.0, 9.0], [0.0, 0.1, 1.0, 5.0]) == [2, 1, 1, 1]


def _result(i, sent, end, status=200, error="", tokens=(), completion=None, scheduled=None):
    return {
        "kind": "result",
        "id": i,
        "scheduled": sent if scheduled is None else scheduled,
        "sent": sent,
        "first_byte": None,
        "first_token": tokens[0] if tokens else None,
        "end": end,
        "status": status,
        "error": error,
        "bytes_in": 10,
        "bytes_out": 5,
        "prompt_tokens": 7 if status == 200 else None,
        "completion_tokens": completion,
        "tokens_from": "usage" if completion is not None else None,
        "token_times": list(tokens),
        "not_sent": False,
    }


def test_summary_definitions_follow_vegeta_metrics():
    results = [
        _result(0, 0.0, 0.1),
        _result(1, 1.0, 1.3, status=500, error="500 Internal Server Error"),
        _result(2, 2.0, 2.5, scheduled=1.99),
        {
            **_result(3, None, None, status=0, error="not sent: max-inflight 1 reached"),
            "not_sent": True,
            "scheduled": 3.0,
        },
    ]
    s = Metrics.of({}, results)
    assert s.requests == 3 and s.scheduled == 4 and s.not_sent == 1
    assert s.duration == pytest.approx(2.0)  # first send to last send
    assert s.wait == pytest.approx(0.5)  # last send to its end
    assert s.rate == pytest.approx(1.5)
    assert s.throughput == pytest.approx(2 / 2.5)
    assert s.success == pytest.approx(2 / 3)
    assert s.status_codes == {"200": 2, "500": 1}
    assert s.errors == ["500 Internal Server Error"]  # not-sent is reported apart
    assert s.latencies.max == pytest.approx(0.5)
    assert s.sched_lag.max == pytest.approx(0.01)
    text = render_text(s)
    assert "Not Sent      [max-inflight, ratio]             1, 25.00%" in text
    assert json.loads(render_json(s))["ttft"]["mean"] is None  # NaN -> null


def test_token_figures():
    results = [
        _result(0, 0.0, 0.5, tokens=(0.1, 0.2, 0.3, 0.5), completion=4),
        _result(1, 1.0, 1.5, tokens=(1.2, 1.3, 1.4, 1.5), completion=4),
    ]
    s = Metrics.of({}, results)
    assert s.ttft.min == pytest.approx(0.1) and s.ttft.max == pytest.approx(0.2)
    assert s.itl.n == 6 and s.itl.max == pytest.approx(0.2)
    assert s.tpot.mean == pytest.approx(((0.4 / 3) + (0.3 / 3)) / 2)
    assert s.completion_tokens.total == 8
    assert s.output_tokens_per_second.run == pytest.approx(8 / 1.5)
    assert s.output_tokens_per_second.per_request.mean == pytest.approx(8.0)


def test_json_report_is_the_metrics_object_with_its_documented_keys():
    results = [
        _result(0, 0.0, 0.5, tokens=(0.1,), completion=1),
        _result(1, 1.0, 1.2, status=500, error="500 Internal Server Error"),
    ]
    header = {"name": "n", "url": "http://x", "rate": 2, "tags": {"gpu": "none"}, "other": 1}
    obj = json.loads(render_json(Metrics.of(header, results)))
    assert list(obj) == [
        "requests", "scheduled", "not_sent", "earliest", "latest", "end", "duration", "wait",
        "total_duration", "rate", "throughput", "latencies", "bytes_in", "bytes_out", "success",
        "status_codes", "errors", "ttft", "itl", "tpot", "prompt_tokens", "completion_tokens",
        "output_tokens_per_second", "not_sent_ratio", "sched_lag", "attack",
    ]  # fmt: skip
    keys = ["n", "min", "mean", "50th", "90th", "95th", "99th", "max", "total"]
    for name in ("latencies", "ttft", "itl", "tpot", "sched_lag"):
        assert list(obj[name]) == keys
    assert list(obj["output_tokens_per_second"]["per_request"]) == keys
    assert list(obj["prompt_tokens"]) == ["total", "mean", "n"]
    assert list(obj["completion_tokens"]) == ["total", "mean", "n", "source"]
    assert obj["attack"]["tags"] == {"gpu": "none"} and "other" not in obj["attack"]
    assert obj["tpot"]["mean"] is None and obj["itl"]["n"] == 0  # one token: NaN -> null
    assert summarize(header, results)["latencies"]["50th"] == obj["latencies"]["50th"]


def test_histogram_puts_what_no_bucket_holds_in_the_last_one_as_vegeta_does():
    # below the first bound and NaN fall through every [b[i], b[i+1]) test into +Inf
    assert histogram([-1.0, math.nan, 0.5], [0.0, 1.0]) == [1, 2]
    # an empty bucket [1s, 1s) takes nothing
    assert histogram([0.5, 1.0, 1.5], [0.0, 1.0, 1.0, 2.0]) == [1, 0, 2, 0]
    assert histogram([], [0.0, 1.0]) == [0, 0]


def test_a_percentile_outside_the_reported_ones_is_refused():
    d = Distribution.of([1.0, 2.0, 3.0])
    assert d.percentile(50) == d.p50 == 2.0
    with pytest.raises(ValueError, match="percentile"):
        d.percentile(75)
