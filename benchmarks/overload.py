"""Admission control under overload, on the embedded model with 2 llama.cpp replicas.

In one run: measure the unloaded latency and the capacity (replicas / median service time),
then attack at 1x, 2x and 3x capacity with `coderig bench` for a bounded time, against a
gateway with admission control on (`--max-queue-wait` = half the unloaded median, so an
admitted request waits at most about half a service) and off (unbounded queue). Reported:
success ratio, shed (429) count, p50/p99 of the admitted requests and their ratio to the
unloaded p99. The claim to check: at 3x overload, admitted p99 stays within 1.5x of the
unloaded p99 with admission on, while without it everyone waits.

Usage: python benchmarks/overload.py [--seconds 20] [--prompt-tokens 64] [--max-tokens 16]
"""

from __future__ import annotations

import argparse
import statistics
import time

import httpx
from common import machine_line, serve

from coderig.bench.attack import AttackConfig, run_attack
from coderig.bench.report import summarize
from coderig.bench.workload import WorkloadSpec
from coderig.models import embedded_model_path


def workload(args) -> WorkloadSpec:
    return WorkloadSpec(
        prompt_tokens=args.prompt_tokens,
        max_tokens=args.max_tokens,
        ignore_eos=True,
        tokenizer=str(embedded_model_path()),
    )


def attack(server, rate: float, args, *, duration=None, requests=None, seed=0) -> dict:
    config = AttackConfig(
        url=f"{server.base_url}/completions",
        rate=rate,
        duration=duration,
        requests=requests,
        timeout=300.0,
        stream=False,
        workload=workload(args),
        seed=seed,
    )
    header, results = run_attack(config)
    return {"summary": summarize(header, results), "results": results}


def admitted_latencies(results: list[dict]) -> list[float]:
    return sorted(r["end"] - r["sent"] for r in results if r["status"] == 200 and r["end"])


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    index = min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))
    return values[index]


def drain(server, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        replicas = httpx.get(f"{server.url}/ready", timeout=10).json()["replicas"]
        if all(r["active"] == 0 and r["queued"] == 0 for r in replicas):
            return
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0, help="per overload attack")
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--unloaded-requests", type=int, default=30)
    args = parser.parse_args()
    common = ("--replicas", "2", "--threads-per-replica", "1", "--no-access-log")

    print("# overload.py —", machine_line())
    print(
        f"workload: distinct ~{args.prompt_tokens}-token code prompts, {args.max_tokens} output "
        "tokens (ignore_eos), non-streaming; 2 replicas x 1 thread\n"
    )
    server = serve(*common, "--max-queue-wait", "off", "--max-queue", "100000")
    try:
        attack(server, 1.0, args, requests=4, seed=99)  # warm up
        drain(server)
        # Unloaded: a rate low enough that requests rarely meet (first guess from one alone).
        alone = admitted_latencies(attack(server, 1.0, args, requests=3, seed=50)["results"])
        low_rate = 0.25 / statistics.median(alone)
        unloaded = attack(server, low_rate, args, requests=args.unloaded_requests, seed=1)
        base = admitted_latencies(unloaded["results"])
    finally:
        server.stop()
    base_p50, base_p99 = pct(base, 50), pct(base, 99)
    capacity = 2 / base_p50  # two replicas, one request each at a time
    print(
        f"unloaded (at {low_rate:.2f} req/s): p50 {base_p50:.3f}s, p99 {base_p99:.3f}s -> "
        f"capacity 2 replicas / p50 = {capacity:.2f} req/s\n"
    )
    max_wait = max(0.05, base_p50 / 2)
    modes = {
        f"on (--max-queue-wait {max_wait * 1000:.0f}ms)": (
            "--max-queue-wait", f"{max_wait * 1000:.0f}ms",
        ),
        "off (unbounded queue)": ("--max-queue-wait", "off", "--max-queue", "100000"),
    }  # fmt: skip
    print(
        "| admission | load | rate req/s | sent | success | shed 429 | admitted p50 | "
        "admitted p99 | p99 / unloaded p99 |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for mode, flags in modes.items():
        server = serve(*common, *flags)
        try:
            attack(server, 1.0, args, requests=4, seed=98)
            drain(server)
            for multiple in (1, 2, 3):
                rate = capacity * multiple
                run = attack(server, rate, args, duration=args.seconds, seed=multiple)
                summary = run["summary"]
                admitted = admitted_latencies(run["results"])
                shed = summary["status_codes"].get("429", 0)
                p99 = pct(admitted, 99)
                print(
                    f"| {mode} | {multiple}x | {rate:.2f} | {summary['requests']} "
                    f"| {summary['success']:.1%} | {shed} | {pct(admitted, 50):.3f}s "
                    f"| {p99:.3f}s | {p99 / base_p99:.2f} |",
                    flush=True,
                )
                drain(server)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
