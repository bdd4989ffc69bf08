"""Honesty checks: the attack reports what the fake server was told to do, and stays open loop.

The fake server (bench_helpers/llm_server.py) runs in its own process and answers after
injected delays. Tolerances are one-sided where physics allows (a response cannot arrive
before its injected delay) and generous on the other side for a loaded 2-core machine.
"""

from __future__ import annotations

import pytest

from coderig.bench.attack import AttackConfig, run_attack
from coderig.bench.metrics import Metrics
from coderig.bench.workload import WorkloadSpec

try:  # the repository's tests/ is a package on main, a plain directory in a worktree
    from tests.bench_helpers.fixtures import llm_server  # noqa: F401  (pytest fixture)
except ImportError:
    from bench_helpers.fixtures import llm_server  # noqa: F401  (pytest fixture)

SLACK = 0.060  # scheduling noise on a shared 2-core box; injected delays are 10-100 ms
RATE_TOLERANCE = 0.01


def vegeta_rate(rate: float, n: int) -> float:
    """What ``Requests[rate]`` must read for n sends exactly on time: n / ((n - 1) / rate).

    (vegeta divides the count by the span from first to last send, which holds n - 1 gaps.)
    """
    return rate * n / (n - 1)


def attack(url: str, **kw) -> tuple[dict, list[dict], dict]:
    header, results = run_attack(AttackConfig(url=url, **kw))
    return header, results, Metrics.of(header, results)


def test_latency_and_rate_match_an_injected_100ms_delay(llm_server):  # noqa: F811
    header, results, s = attack(f"{llm_server}/v1/completions?delay=0.1", rate=80, duration=1.0)
    assert s.requests == 80 and s.success == 1.0
    assert s.rate == pytest.approx(vegeta_rate(80, 80), rel=RATE_TOLERANCE)
    assert s.sched_lag.p50 < 0.005
    lat = s.latencies
    assert lat.min >= 0.1  # nothing can be faster than the injected delay
    assert lat.p50 < 0.1 + SLACK
    assert s.wait == pytest.approx(lat.max, abs=0.05)
    assert header["rate"] == 80 and header["requests"] == 80 and header["stream"] is False
    # without a stream there is no first token to time, and we don't pretend otherwise
    assert all(r["first_token"] is None for r in results)
    assert all(r["completion_tokens"] == 5 and r["tokens_from"] == "usage" for r in results)


def test_ttft_and_itl_match_a_stream_of_one_token_every_10ms(llm_server):  # noqa: F811
    url = f"{llm_server}/v1/completions?delay=0.05&tokens=12&interval=0.01"
    _, results, s = attack(url, rate=20, duration=1.0, stream=True)
    assert s.success == 1.0
    assert 0.05 <= s.ttft.min and s.ttft.p50 < 0.05 + SLACK
    assert s.itl.n == 20 * 11
    # asyncio.sleep never wakes early: mean ITL >= 10 ms, and not much more
    assert 0.0099 <= s.itl.mean < 0.016
    assert 0.008 <= s.itl.p50 < 0.016
    assert 0.0099 <= s.tpot.p50 < 0.016
    assert s.latencies.min >= 0.05 + 11 * 0.01
    assert s.completion_tokens.total == 240 and s.completion_tokens.source == "usage"
    assert all(len(r["token_times"]) == 12 for r in results)


def test_tokens_are_counted_from_chunks_when_the_stream_has_no_usage(llm_server):  # noqa: F811
    url = f"{llm_server}/v1/chat/completions?tokens=7&usage=0"
    _, results, s = attack(url, rate=20, requests=10, stream=True)
    # the role-only opening delta of a chat stream carries no text: not a token
    assert [r["completion_tokens"] for r in results] == [7] * 10
    assert s.completion_tokens.source == "chunks"
    assert all(r["first_token"] >= r["first_byte"] for r in results)


def test_a_stalling_server_does_not_slow_the_sender(llm_server):  # noqa: F811
    # every 2nd request hangs; the other half answer at once
    url = f"{llm_server}/v1/completions?stall_every=2&stall=30"
    _, results, s = attack(url, rate=40, duration=1.0, timeout=0.5)
    assert s.requests == 40
    assert s.rate == pytest.approx(vegeta_rate(40, 40), rel=RATE_TOLERANCE)
    assert s.sched_lag.p99 < 0.05
    assert s.success == pytest.approx(0.5)
    assert s.status_codes == {"0": 20, "200": 20}
    assert any("timeout (0.5s exceeded" in e for e in s.errors)
    timed_out = [r["end"] - r["sent"] for r in results if r["status"] == 0]
    # aiohttp arms its timer on the loop clock (1 ms ticks under uvloop): allow 2 ms early
    assert min(timed_out) >= 0.498 and max(timed_out) < 0.5 + SLACK * 3


def test_a_fully_stalled_server_still_gets_every_request_on_time(llm_server):  # noqa: F811
    url = f"{llm_server}/v1/completions?stall_every=1&stall=30"
    _, results, s = attack(url, rate=50, duration=1.0, timeout=0.3)
    assert s.requests == 50 and s.success == 0.0
    assert s.rate == pytest.approx(vegeta_rate(50, 50), rel=RATE_TOLERANCE)
    sends = [r["sent"] - r["scheduled"] for r in results]
    assert max(sends) < 0.05


def test_max_inflight_skips_requests_and_says_so(llm_server):  # noqa: F811
    url = f"{llm_server}/v1/completions?stall_every=1&stall=30"
    _, results, s = attack(url, rate=20, duration=1.0, timeout=1.1, max_inflight=5)
    assert s.requests == 5 and s.not_sent == 15 and s.scheduled == 20
    skipped = [r for r in results if r["not_sent"]]
    assert all(r["sent"] is None and "max-inflight 5" in r["error"] for r in skipped)
    # the ones that were sent went out on schedule: skipping never delays anyone
    assert [r["id"] for r in results if not r["not_sent"]] == [0, 1, 2, 3, 4]


def test_http_errors_and_refused_connections_are_failures(llm_server):  # noqa: F811
    _, _, s = attack(f"{llm_server}/v1/completions?status=503", rate=20, requests=5)
    assert s.success == 0.0 and s.status_codes == {"503": 5}
    assert s.errors == ["503 Service Unavailable"]
    _, _, s = attack("http://127.0.0.1:9/v1/completions", rate=20, requests=3, timeout=2.0)
    assert s.status_codes == {"0": 3} and s.success == 0.0
    assert s.errors and s.errors[0].startswith('Post "http://127.0.0.1:9/v1/completions"')


def test_generated_prompts_reach_the_server_distinct_and_well_formed(llm_server):  # noqa: F811
    import json
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(f"{llm_server}/reset", method="POST")).read()
    spec = WorkloadSpec(prompt_tokens=200, max_tokens=16, fim=True, ignore_eos=True, model="m")
    _, results, s = attack(
        f"{llm_server}/v1/completions", rate=50, requests=20, workload=spec, stream=True
    )
    bodies = json.loads(urllib.request.urlopen(f"{llm_server}/stats").read())["bodies"]
    assert len(bodies) == 20
    prompts = [b["prompt"] for b in bodies]
    assert len(set(prompts)) == 20 and len({p[:200] for p in prompts}) == 20
    for b in bodies:
        assert b["suffix"] and b["max_tokens"] == 16 and b["model"] == "m"
        assert b["ignore_eos"] is True and b["min_tokens"] == 16 and b["stream"] is True
        assert b["stream_options"] == {"include_usage": True}
        size = len(b["prompt"]) + len(b["suffix"])
        assert size == pytest.approx(200 * spec.chars_per_token, rel=0.05)
    # the server's own token count is what the results keep
    assert all(
        r["prompt_tokens"] == (len(b["prompt"]) + len(b["suffix"])) // 4
        for r, b in zip(sorted(results, key=lambda r: r["id"]), bodies, strict=True)
    )
