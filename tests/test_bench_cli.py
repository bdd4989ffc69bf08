"""The command line, end to end: attack | report like vegeta, files read back identically."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from coderig.bench.results import read_attacks, read_results

try:  # the repository's tests/ is a package on main, a plain directory in a worktree
    from tests.bench_helpers.fixtures import llm_server  # noqa: F401  (pytest fixture)
except ImportError:
    from bench_helpers.fixtures import llm_server  # noqa: F401  (pytest fixture)

ROOT = Path(__file__).resolve().parents[1]
CODERIG = [sys.executable, "-m", "coderig"]


def run(args: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        CODERIG + args, cwd=ROOT, capture_output=True, text=True, timeout=120, **kw
    )


def test_report_on_a_saved_file_repeats_the_attack_time_report(llm_server, tmp_path):  # noqa: F811
    out = tmp_path / "r.jsonl"
    url = f"{llm_server}/v1/completions?delay=0.02&tokens=6&interval=0.005"
    done = run(
        [
            "bench",
            "attack",
            "--url",
            url,
            "--rate",
            "20",
            "--duration",
            "1s",
            "--stream",
            "--prompt-tokens",
            "50",
            "--max-tokens",
            "6",
            "--tag",
            "gpu=cpu",
            "--tag",
            "model=fake",
            "-o",
            str(out),
            "--report",
        ]
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""  # results went to the file
    later = run(["bench", "report", str(out)])
    assert later.returncode == 0, later.stderr
    assert later.stdout == done.stderr  # same numbers, to the last digit
    assert "Requests      [total, rate, throughput]         20," in later.stdout
    header, results = read_results(out)
    assert header["tags"] == {"gpu": "cpu", "model": "fake"}
    assert header["prompt_tokens"] == 50 and header["max_tokens"] == 6 and header["fim"] is False
    assert header["stream"] is True and header["arrival"] == "constant"
    assert len(results) == 20


def test_attack_pipes_into_report_like_vegeta(llm_server, tmp_path):  # noqa: F811
    saved = tmp_path / "tee.jsonl"
    url = f"{llm_server}/v1/completions"
    cmd = (
        f"{sys.executable} -m coderig bench attack --url '{url}' --rate 50 --requests 25 "
        f"| tee {saved} | {sys.executable} -m coderig bench report"
    )
    piped = subprocess.run(cmd, shell=True, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout.startswith("Requests      [total, rate, throughput]         25,")
    assert "Success       [ratio]                           100.00%" in piped.stdout
    assert piped.stdout == run(["bench", "report", str(saved)]).stdout


def test_json_and_hist_reports_and_several_files(llm_server, tmp_path):  # noqa: F811
    files = []
    for i in range(2):
        f = tmp_path / f"a{i}.jsonl"
        done = run(
            [
                "bench",
                "attack",
                "--url",
                f"{llm_server}/v1/completions?delay=0.01",
                "--rate",
                "40",
                "--requests",
                "10",
                "-o",
                str(f),
            ]
        )
        assert done.returncode == 0, done.stderr
        files.append(f)
    js = run(["bench", "report", "--type", "json", *map(str, files)])
    summary = json.loads(js.stdout)
    assert summary["requests"] == 20 and summary["success"] == 1.0
    assert summary["latencies"]["min"] >= 0.01
    hist = run(["bench", "report", "--type", "hist[0,5ms,10ms,1s]", str(files[0])])
    assert hist.stdout.splitlines()[0].split() == ["Bucket", "#", "%", "Histogram"]
    counts = [int(line.split()[2]) for line in hist.stdout.splitlines()[1:]]
    assert counts[0] == counts[1] == 0 and counts[2] == 10  # all at or just above 10 ms
    # concatenated attacks read back as two attacks, or merged on one clock
    both = tmp_path / "both.jsonl"
    both.write_text(files[0].read_text() + files[1].read_text())
    assert [len(r) for _, r in read_attacks(both)] == [10, 10]
    header, merged = read_results(both)
    assert len(merged) == 20 and len(header["attacks"]) == 2
    assert max(r["sent"] for r in merged) > 0.2  # the second attack started later


def test_live_report_every_interval(llm_server):  # noqa: F811
    url = f"{llm_server}/v1/completions"
    cmd = (
        f"{sys.executable} -m coderig bench attack --url '{url}' --rate 20 --duration 2s "
        f"--flush-every 300ms | {sys.executable} -m coderig bench report --every 500ms"
    )
    piped = subprocess.run(cmd, shell=True, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert piped.returncode == 0, piped.stderr
    totals = [
        int(line.split()[-3].rstrip(","))
        for line in piped.stdout.splitlines()
        if line.startswith("Requests")
    ]
    assert len(totals) >= 3 and totals == sorted(totals) and totals[-1] == 40
    assert totals[0] < 40


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rate", "10"], "--duration or --requests"),
        (["--duration", "1s", "--arrival", "bursty"], "bursty"),
        (["--duration", "1x"], "invalid duration"),
        (["--duration", "1s", "--tag", "novalue"], "key=value"),
    ],
)
def test_attack_refuses_unbounded_or_malformed_options(args, message):
    done = run(["bench", "attack", "--url", "http://127.0.0.1:9/v1/completions", *args])
    assert done.returncode != 0 and message in done.stderr


def test_ctrl_c_stops_the_attack_and_keeps_what_was_done(llm_server, tmp_path):  # noqa: F811
    import signal
    import time

    out = tmp_path / "partial.jsonl"
    httpx.post(f"{llm_server}/reset", timeout=10)
    proc = subprocess.Popen(
        CODERIG
        + [
            "bench",
            "attack",
            "--url",
            f"{llm_server}/v1/completions?stall_every=1",
            "--rate",
            "20",
            "--duration",
            "30s",
            "-o",
            str(out),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Interrupt once the attack is under way: the server has seen its first request.
    deadline = time.monotonic() + 30
    while httpx.get(f"{llm_server}/stats", timeout=10).json()["count"] < 1:
        assert time.monotonic() < deadline and proc.poll() is None, "the attack never started"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    header, results = read_results(out)
    assert header["interrupted"] is True and header["requests"] == 600
    assert 1 <= len(results) <= 120  # what was sent before the interrupt, not the 600 planned
    assert all("interrupted (attack stopped while awaiting headers)" in r["error"] for r in results)


def test_a_bodies_file_is_sent_in_order_and_cycled(llm_server, tmp_path):  # noqa: F811
    bodies = tmp_path / "typing.jsonl"
    lines = [json.dumps({"prompt": "x" * n, "max_tokens": 2}) for n in (10, 200, 3000)]
    bodies.write_text("\n".join(lines) + "\n")
    out = tmp_path / "r.jsonl"
    done = run(
        ["bench", "attack", "--url", f"{llm_server}/v1/completions", "--rate", "50",
         "--requests", "6", "--bodies", str(bodies), "-o", str(out)]
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    header, results = read_results(out)
    assert header["workload"] == "bodies" and header["bodies"] == 3
    sizes = [len(line) for line in lines]
    assert [r["bytes_out"] for r in sorted(results, key=lambda r: r["scheduled"])] == sizes * 2


def test_a_bodies_file_with_a_bad_line_is_refused(tmp_path):
    bodies = tmp_path / "bad.jsonl"
    bodies.write_text('{"prompt": "a"}\n[1, 2]\n')
    done = run(
        ["bench", "attack", "--url", "http://127.0.0.1:9/v1/completions", "--rate", "1",
         "--requests", "1", "--bodies", str(bodies)]
    )  # fmt: skip
    assert done.returncode != 0
    assert "bad.jsonl:2" in done.stderr
