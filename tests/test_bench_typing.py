"""``coderig bench typing`` against the fake server: suggestions shown or cancelled as the
server's speed says, connections really closed at the next keystroke, the same seed replaying
the same requests, and every editor API read right.

The team here types briskly inside lines (gaps far below the debounce) and thinks before each
line, so every request has between ~0.7 s and ~1.5 s before the next keystroke. Server delays
are chosen 20x below the shortest of those windows and 20x above the longest, as measured on
the script itself, so the outcomes do not depend on this machine's speed.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from dataclasses import replace
from urllib.parse import urlencode

import httpx
import pytest
from click.testing import CliRunner

from coderig.bench.attack import run_on_loop
from coderig.bench.corpus import Corpus
from coderig.bench.typing import TypingConfig, plan_typing, typing_run
from coderig.bench.typing_report import summarize_typing
from coderig.cli import main
from coderig.traffic.typing_team import TypingParams

try:  # the repository's tests/ is a package on main, a plain directory in a worktree
    from tests.bench_helpers.fixtures import llm_server, running_server  # noqa: F401
except ImportError:
    from bench_helpers.fixtures import llm_server, running_server  # noqa: F401

BRISK = TypingParams.defaults().with_(
    typist_mean_iki=0.06,
    typist_sd_iki=1e-9,
    fastest_iki=0.05,
    iki_cv=0.05,
    line_think=1.0,
    line_think_cv=0.05,
    micro_pause_share=0.0,
    move=1.0,
    file_switch=1.0,
    move_cv=0.05,
)
# Twice as quick at the keys: the first requests go out sooner, for tests that need a few.
QUICK = BRISK.with_(typist_mean_iki=0.03, fastest_iki=0.025)
LINE = "total = accumulate(total, item)"


def stats(base: str) -> dict:
    return httpx.get(f"{base}/stats", timeout=10).json()


def settled(base: str) -> dict:
    """Server counters once no handler is running any more."""
    deadline = time.monotonic() + 10
    while (s := stats(base))["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.05)
    return s


@pytest.fixture
def server(llm_server):  # noqa: F811
    httpx.post(f"{llm_server}/reset", timeout=10)
    return llm_server


def windows(config: TypingConfig) -> list[float]:
    script = plan_typing(config).script
    return [r.cancel - r.send for r in script.requests]


def test_fast_server_shows_nearly_all_slow_server_gets_cancelled_and_sees_clients_leave(server):
    # Many developers for a short while: the same 20+ requests as a few for longer, sooner.
    config = TypingConfig(url=server, developers=80, duration=3.0, params=BRISK, seed=11)
    budget = windows(config)
    assert len(budget) >= 20 and min(budget) > 0.5  # the brisk team's property

    # The same team against a fast server and a slow one at once, each a server of its own.
    with running_server() as slow_server:
        fast_config = replace(config, url=f"{server}?delay={min(budget) / 20:.4f}")
        slow_config = replace(config, url=f"{slow_server}?delay={max(budget) * 20:.2f}")

        async def both():
            return await asyncio.gather(typing_run(fast_config), typing_run(slow_config))

        (fast_header, fast), (slow_header, slow) = run_on_loop(both)
        fast_bodies = [json.dumps(b, sort_keys=True) for b in stats(server)["bodies"]]
        seen = settled(slow_server)

    s = summarize_typing(fast_header, fast)
    assert s.requests == len(budget) and s.errors == 0
    assert s.shown >= 0.9 * s.requests
    assert all(r["end"] <= r["cancel_at"] for r in fast if r["outcome"] == "shown")
    assert s.headline().startswith(f"of {s.requests} suggestions requested, ")

    s = summarize_typing(slow_header, slow)
    assert s.cancelled >= 0.95 * s.requests and s.shown == 0
    for r in slow:
        if r["outcome"] == "cancelled":  # closed at the next keystroke, not later
            assert r["cancel_at"] <= r["end"] < r["cancel_at"] + 0.5
    assert seen["handled"] == s.requests  # each had time to reach the server...
    assert seen["disconnected"] == s.cancelled  # ...which saw every cancelled client leave
    assert seen["completed"] == 0

    # The same seed: the same keystrokes, so the same requests, whatever the server did.
    assert sorted(json.dumps(b, sort_keys=True) for b in seen["bodies"]) == sorted(fast_bodies)
    keys = ("scheduled", "cancel_at", "developer", "file", "cursor", "bytes_out")
    assert [[r[k] for k in keys] for r in fast] == [[r[k] for k in keys] for r in slow]


def test_every_editor_api_is_sent_and_read_as_its_editor_does(server, tmp_path):
    # One file of identical lines: the line typed after every Enter is LINE, which the fake
    # server answers, so every shown suggestion at a line start is accepted.
    (tmp_path / "loop.py").write_text("def f(items):\n" + f"    {LINE}\n" * 60)
    reply = f"{LINE}\n    return total"
    base = dict(developers=2, duration=3.0, params=QUICK, corpus=str(tmp_path), seed=3)
    query = urlencode({"delay": 0.01, "interval": 0.001, "text": reply})
    configs = [
        TypingConfig(url=f"{server}?{query}", api=api, **base)
        for api in ("openai", "infill", "ollama", "tabby")
    ]
    # A server that streams for ever: every request is cancelled mid-stream.
    endless = TypingConfig(url=f"{server}?tokens=100000&interval=0.01", **base)

    async def all_at_once():
        return await asyncio.gather(*(typing_run(c) for c in [*configs, endless]))

    runs = run_on_loop(all_at_once)
    for config, (header, results) in zip(configs, runs, strict=False):
        s = summarize_typing(header, results)
        assert header["api"] == config.api and s.requests > 0, config.api
        assert s.shown >= 0.9 * s.requests, config.api
        assert s.comparable > 0 and s.accepted == s.comparable, config.api
        shown = [r for r in results if r["outcome"] == "shown"]
        if config.api == "tabby":  # one JSON answer: no token times, no usage
            assert all(r["first_token"] is None for r in shown)
        else:
            assert all(r["sent"] < r["first_token"] <= r["end"] for r in shown)
            assert all(r["tokens_from"] == "usage" for r in shown), config.api
        if config.api in ("openai", "infill"):
            assert s.cached_reported == s.requests - s.cancelled, config.api
    assert runs[0][0]["model"] == "fake-coder" and runs[2][0]["model"] == "fake-coder:latest"

    shapes = {frozenset(b) for b in stats(server)["bodies"]}
    assert frozenset({"model", "prompt", "suffix", "max_tokens", "temperature", "stream",
                      "stream_options"}) in shapes  # fmt: skip
    assert frozenset({"input_prefix", "prompt", "input_suffix", "input_extra", "n_predict",
                      "n_indent", "temperature", "cache_prompt", "stream"}) in shapes  # fmt: skip
    assert frozenset({"model", "prompt", "suffix", "stream", "options"}) in shapes
    assert frozenset({"segments", "temperature", "max_tokens"}) in shapes

    header, results = runs[-1]
    s = summarize_typing(header, results)
    assert s.cancelled == s.requests > 0
    assert s.wasted_tokens == sum(len(r["token_times"]) for r in results) > 0


def test_cli_prints_the_summary_writes_results_and_report_and_plots_read_them(server, tmp_path):
    params = tmp_path / "quick.toml"
    lines = ["[team]\n"] + [f"{k} = {v!r}\n".replace("'", '"') for k, v in QUICK.to_dict().items()]
    params.write_text("".join(lines))
    out = tmp_path / "typing.jsonl"
    cli = [sys.executable, "-m", "coderig", "bench"]
    run = subprocess.run(
        [*cli, "typing", "--url", f"{server}?delay=0.02", "--developers", "16", "--duration",
         "2.5s", "--params", str(params), "--json", "-o", str(out), "--plots",
         str(tmp_path / "plots"), "--no-progress"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    summary = json.loads(run.stdout)
    for key in ("requests", "shown", "cancelled", "errors", "accepted", "wasted_tokens"):
        assert isinstance(summary[key], int)
    assert set(summary["shown_latency"]) >= {"p50", "p90", "p99"}
    assert summary["headline"].startswith(f"of {summary['requests']} suggestions requested")

    lines = out.read_text().splitlines()
    header = json.loads(lines[0])
    assert header["workload"] == "typing" and header["typing"]["line_think"] == 1.0
    assert len(lines) == 1 + summary["requests"]
    first = json.loads(lines[1])
    assert {"developer", "file", "cursor", "sent", "first_token", "end", "outcome",
            "completion_tokens", "cached_tokens", "accepted"} <= set(first)  # fmt: skip

    # Reading the file back: the same commands, in process (the attack above was a real one).
    def coderig(*args: str) -> str:
        result = CliRunner().invoke(main, ["bench", *args])
        assert result.exit_code == 0, result.output
        return result.stdout

    text = coderig("report", str(out))
    assert "Outcomes" in text and summary["headline"] in text
    assert json.loads(coderig("report", "--type", "json", str(out))) == summary
    for name in ("typing-shown-cdf.png", "typing-outcomes.png", "typing.html"):
        assert (tmp_path / "plots" / name).stat().st_size > 1000
    coderig("plot", str(out), str(out), "--out-dir", str(tmp_path / "again"))
    assert "suggestions requested" in (tmp_path / "again" / "typing.html").read_text()


def test_the_stdlib_is_the_default_corpus():
    assert len(Corpus()) > 100


def test_each_developer_is_named_in_a_session_header_unless_one_is_given():
    from coderig.bench.typing import _Replay

    config = TypingConfig(url="http://127.0.0.1:9", developers=3, duration=10.0, params=BRISK)
    replay = _Replay(config, plan_typing(config), session=None)
    sent = {replay._headers(r)["X-Coderig-Session"] for r in replay.results}
    assert sent == {f"developer-{r.request.developer}" for r in replay.results}
    assert len(sent) == 3

    given = TypingConfig(
        url="http://127.0.0.1:9", developers=3, duration=10.0, params=BRISK,
        headers={"x-coderig-session": "mine"},
    )  # fmt: skip
    replay = _Replay(given, plan_typing(given), session=None)
    assert all(replay._headers(r)["x-coderig-session"] == "mine" for r in replay.results)
    assert all("X-Coderig-Session" not in replay._headers(r) for r in replay.results)
