"""Does it hold? One table of figures: schema fuzzing, hostile HTTP, an overload soak, faults.

Runs against real `coderig serve` processes on the embedded model (traffic to 127.0.0.1 only,
every phase bounded in requests and time):

1. schemathesis on the gateway's OpenAPI document, all checks but wall-clock time, with a
   larger example budget than the test suite;
2. hostile HTTP cases (oversized head and body, slowloris head and body, half-open and 2,000
   idle keep-alive connections, invalid UTF-8, deep JSON, lone surrogates, special tokens),
   each "held" when it gets its 4xx or a closed connection while a normal request is served;
3. an overload soak with `coderig bench` at several times capacity: sent = answered + shed +
   lost, peak RSS of gateway and replicas sampled throughout, latency right after;
4. faults: SIGKILL and SIGSTOP a replica under load, SIGKILL the gateway: requests on the
   replica end with a 503, the replica is back (time to recover), no orphan processes.

Usage: python benchmarks/reliability.py [--fuzz-examples 100] [--soak-seconds 120]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from common import machine_line, serve

from coderig.bench.attack import AttackConfig, run_attack
from coderig.bench.report import summarize
from coderig.bench.workload import WorkloadSpec

GOOD = {"prompt": "x = ", "max_tokens": 2}
CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_headers_conformance,response_schema_conformance,negative_data_rejection,"
    "positive_data_acceptance,missing_required_header,unsupported_method,"
    "allow_header_conformance,use_after_free,ensure_resource_availability,ignored_auth,"
    "object_level_authorization"
)


def rss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def serving(server) -> bool:
    try:
        response = httpx.post(f"{server.base_url}/completions", json=GOOD, timeout=60)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


# --- 1. fuzzing ----------------------------------------------------------------------------


def fuzz(examples: int) -> dict:
    server = serve("--max-tokens-limit", "8", "--no-access-log")
    try:
        command = shutil.which("schemathesis") or "schemathesis"
        report = Path(tempfile.mkdtemp(prefix="coderig-fuzz-"))
        result = subprocess.run(
            [
                command, "run", f"{server.url}/openapi.json", "--checks", CHECKS,
                "-n", str(examples), "--seed", "11", "--workers", "1", "--no-color",
                "--generation-database", "none", "--request-timeout", "120",
                "--output-sanitize", "false", "--report", "junit", "--report-dir", str(report),
            ],
            capture_output=True, text=True, timeout=3600,
        )  # fmt: skip
        generated = 0
        for line in result.stdout.splitlines():
            if "generated" in line and line.strip()[0].isdigit():
                generated = int(line.strip().split()[0])
        metrics = httpx.get(f"{server.url}/metrics").text
        five_xx = sum(
            float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("coderig_requests_total") and 'status="5' in line
        )
        return {
            "inputs": generated,
            "failures": 0 if result.returncode == 0 else result.stdout.count("Test Case ID"),
            "5xx": int(five_xx),
            "up": serving(server),
        }
    finally:
        server.stop()


# --- 2. hostile HTTP -------------------------------------------------------------------------


def raw_exchange(server, payload: bytes, dribble: bytes = b"", pause: float = 0.0) -> bytes:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    try:
        if payload:
            sock.sendall(payload)
        for _ in range(30 if dribble else 0):
            try:
                sock.sendall(dribble)
            except OSError:
                break
            time.sleep(pause)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        sock.close()


def status(raw: bytes) -> int | None:
    return int(raw[9:12]) if raw.startswith(b"HTTP/1.1 ") else None


def post_raw(server, body: bytes) -> int:
    return httpx.post(
        f"{server.base_url}/completions",
        content=body,
        headers={"content-type": "application/json"},
        timeout=60,
    ).status_code


def hostile() -> list[tuple[str, bool, str]]:
    server = serve(
        "--header-timeout", "2s", "--body-timeout", "2s", "--max-header-size", "16KiB",
        "--no-access-log",
    )  # fmt: skip
    cases: list[tuple[str, bool, str]] = []

    def case(name: str, held: bool, detail: str) -> None:
        cases.append((name, held and serving(server), detail))

    try:
        raw = raw_exchange(
            server, b"GET /health HTTP/1.1\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n"
        )
        case("oversized headers (100 KB)", status(raw) == 431, f"status {status(raw)}")
        code = post_raw(server, b'{"prompt": "' + b"a" * 3_000_000 + b'"}')
        case("oversized body (3 MB)", code == 413, f"status {code}")
        raw = raw_exchange(server, b"POST /v1/completions HTTP/1.1\r\n", b"X-A: 1\r\n", 0.5)
        case("slowloris head (1 header/0.5 s)", status(raw) == 408, f"status {status(raw)}")
        raw = raw_exchange(
            server,
            b"POST /v1/completions HTTP/1.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n{",
            b" ",
            0.5,
        )
        case("slowloris body (1 byte/0.5 s)", status(raw) == 408, f"status {status(raw)}")
        started = time.monotonic()
        raw = raw_exchange(server, b"")
        case(
            "half-open (connect, say nothing)",
            raw == b"",
            f"closed after {time.monotonic() - started:.1f}s",
        )
        pid = server.process.pid
        before = rss_mib(pid)
        socks = []
        try:
            for _ in range(2000):
                sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                socks.append(sock)
            ok = serving(server)
            grown = rss_mib(pid) - before
        finally:
            for sock in socks:
                sock.close()
        case("2,000 idle keep-alive connections", ok, f"gateway RSS +{grown:.0f} MiB")
        for name, body in [
            ("invalid UTF-8", b'{"prompt": "\xff\xfe"}'),
            (
                "deeply nested JSON (100k levels)",
                b'{"prompt": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
            ),
            ("lone UTF-16 surrogate", b'{"prompt": "\\ud800"}'),
            ("NaN temperature", b'{"prompt": "x", "temperature": NaN}'),
        ]:
            code = post_raw(server, body)
            case(name, code == 400, f"status {code}")
        special = httpx.post(
            f"{server.base_url}/completions",
            json={"prompt": "<|im_start|><|im_end|><|endoftext|>" * 300, "max_tokens": 2},
            timeout=120,
        ).status_code
        case("prompt of only special tokens", special == 200, f"status {special}")
    finally:
        server.stop()
    return cases


# --- 3. overload soak ------------------------------------------------------------------------


def soak(seconds: float, rate: float) -> dict:
    server = serve(
        "--replicas", "2", "--threads-per-replica", "1", "--max-queue-wait", "500ms",
        "--no-access-log",
    )  # fmt: skip
    try:
        pids = [server.process.pid] + [r["pid"] for r in server.ready_info()["replicas"]]
        body = b'{"prompt": "def parse(text):\\n", "max_tokens": 16, "ignore_eos": true}'
        samples: list[float] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                samples.append(sum(rss_mib(pid) for pid in pids))
                time.sleep(1.0)

        sampler = threading.Thread(target=sample)
        baseline = sum(rss_mib(pid) for pid in pids)
        before = time.monotonic()
        serving(server)
        latency_before = time.monotonic() - before
        sampler.start()
        config = AttackConfig(
            url=f"{server.base_url}/completions",
            rate=rate,
            duration=seconds,
            timeout=120.0,
            workload=WorkloadSpec(body=body),
        )
        header, results = run_attack(config)
        stop.set()
        sampler.join()
        s = summarize(header, results)
        codes = s["status_codes"]
        after = time.monotonic()
        serving(server)
        latency_after = time.monotonic() - after
        quarter = max(1, len(samples) // 4)
        quarters = [
            max(samples[i * quarter : (i + 1) * quarter], default=baseline) for i in range(4)
        ]
        half = len(samples) // 2
        return {
            "rss_quarters": quarters,
            "sent": s["requests"],
            "answered": codes.get("200", 0),
            "shed": codes.get("429", 0),
            "lost": s["requests"] - codes.get("200", 0) - codes.get("429", 0),
            "rate": rate,
            "seconds": seconds,
            "rss_start": baseline,
            "rss_peak": max(samples, default=baseline),
            "rss_first_half": max(samples[:half], default=baseline),
            "rss_second_half": max(samples[half:], default=baseline),
            "latency_before": latency_before,
            "latency_after": latency_after,
        }
    finally:
        server.stop()


# --- 4. faults -------------------------------------------------------------------------------


def fault(sig: signal.Signals) -> dict:
    server = serve(
        "--replicas", "2", "--threads-per-replica", "1", "--health-check", "1s,2s,3",
        "--no-access-log",
    )  # fmt: skip
    try:
        url = f"{server.base_url}/completions"
        body = {"prompt": "def main():\n", "max_tokens": 400, "ignore_eos": True}
        results: list = []
        thread = threading.Thread(
            target=lambda: results.append(httpx.post(url, json=body, timeout=300))
        )
        thread.start()
        busy = None
        while busy is None:
            busy = next((r for r in server.ready_info()["replicas"] if r["active"]), None)
            time.sleep(0.05)
        time.sleep(0.5)
        os.kill(busy["pid"], sig)
        hit = time.monotonic()
        others_ok = serving(server)
        thread.join(300)
        ended = time.monotonic() - hit
        recovered = None
        while time.monotonic() - hit < 120:
            replica = next(r for r in server.ready_info()["replicas"] if r["name"] == busy["name"])
            if replica["state"] == "ready" and replica["pid"] != busy["pid"]:
                recovered = time.monotonic() - hit
                break
            time.sleep(0.1)
        return {
            "status": results[0].status_code if results else None,
            "request_ended_after": ended,
            "others_served": others_ok,
            "recovered_after": recovered,
            "old_process_gone": not alive(busy["pid"]),
        }
    finally:
        server.stop()


def gateway_kill() -> dict:
    server = serve("--replicas", "2", "--threads-per-replica", "1", "--no-access-log")
    pids = [r["pid"] for r in server.ready_info()["replicas"]]
    server.process.kill()
    server.process.wait()
    started = time.monotonic()
    while any(alive(pid) for pid in pids) and time.monotonic() - started < 30:
        time.sleep(0.05)
    return {"orphans": sum(alive(pid) for pid in pids), "gone_after": time.monotonic() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fuzz-examples", type=int, default=100)
    parser.add_argument("--soak-seconds", type=float, default=120.0)
    parser.add_argument("--soak-rate", type=float, default=20.0)
    args = parser.parse_args()
    print("# reliability.py —", machine_line())
    print()
    fz = fuzz(args.fuzz_examples)
    cases = hostile()
    sk = soak(args.soak_seconds, args.soak_rate)
    kill = fault(signal.SIGKILL)
    stop = fault(signal.SIGSTOP)
    gw = gateway_kill()
    held = sum(1 for _, ok, _ in cases if ok)
    recovered = sum(
        [
            kill["recovered_after"] is not None,
            stop["recovered_after"] is not None,
            gw["orphans"] == 0,
        ]
    )
    rows = [
        ("inputs fuzzed (schemathesis, 6 operations)", f"{fz['inputs']}"),
        (
            "schema failures / 5xx seen / server up after",
            f"{fz['failures']} / {fz['5xx']} / {fz['up']}",
        ),
        ("hostile cases tried / held", f"{len(cases)} / {held}"),
        (
            f"overload soak ({sk['rate']:g} req/s for {sk['seconds']:g}s, ~5x capacity): "
            "sent / answered / shed / lost",
            f"{sk['sent']} / {sk['answered']} / {sk['shed']} / {sk['lost']}",
        ),
        (
            "RSS, gateway + 2 replicas: start / peak in each quarter of the soak (bound: start + "
            "2 x 256 MiB prompt cache)",
            f"{sk['rss_start']:.0f} / "
            + " / ".join(f"{q:.0f}" for q in sk["rss_quarters"])
            + " MiB",
        ),
        (
            "latency of one request before / right after the soak",
            f"{sk['latency_before']:.2f}s / {sk['latency_after']:.2f}s",
        ),
        ("faults injected / recovered", f"3 / {recovered}"),
        (
            "SIGKILL replica mid-request: status, ended after, other replica served, back after",
            f"{kill['status']}, {kill['request_ended_after']:.2f}s, {kill['others_served']}, "
            f"{kill['recovered_after']:.1f}s",
        ),
        (
            "SIGSTOP replica mid-request: status, ended after, other replica served, back after",
            f"{stop['status']}, {stop['request_ended_after']:.2f}s, {stop['others_served']}, "
            f"{stop['recovered_after']:.1f}s",
        ),
        (
            "SIGKILL gateway: orphan replicas, gone after",
            f"{gw['orphans']}, {gw['gone_after']:.2f}s",
        ),
    ]
    print("| figure | value |")
    print("|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    print("\n| hostile case | held | detail |")
    print("|---|---|---|")
    for name, ok, detail in cases:
        print(f"| {name} | {'yes' if ok else 'NO'} | {detail} |")


if __name__ == "__main__":
    sys.exit(main())
