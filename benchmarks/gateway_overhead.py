"""What the gateway costs: the same requests sent straight to one llama.cpp replica and through
`coderig serve`, in one run, alternating, so machine drift hits both sides alike.

Latency: N pairs of sequential requests (one direct, one through the gateway, the order flipped
every pair, the same prompt within a pair), for non-streaming and streaming clients; the added
latency is gateway minus direct, per pair. Throughput: blocks of C concurrent clients sending a
fixed number of requests, direct and gateway blocks alternating; the ratio is gateway/direct.

Usage: python benchmarks/gateway_overhead.py [--pairs 60] [--max-tokens 16] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.support.engine import replica_auth  # noqa: E402
from tests.support.server import start_server  # noqa: E402


def prompt_for(i: int, side: int) -> str:
    """Distinct prompts of identical token length, different from their first line on, so no
    request reuses another's KV cache (SmolLM2 tokenizes digits one by one)."""
    return f"# {i:05d}{side}\ndef handler(request):\n    # validate the payload\n    data = "


def one_request(
    client: httpx.Client, url: str, prompt: str, max_tokens: int, stream: bool
) -> float:
    body = {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": stream}
    body["ignore_eos"] = True  # same length on both paths
    started = time.perf_counter()
    if stream:
        with client.stream("POST", url, json=body) as response:
            response.raise_for_status()
            for _ in response.iter_lines():
                pass
    else:
        response = client.post(url, json=body)
        response.raise_for_status()
    return time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def latency_pairs(direct_url, gateway_url, pairs, max_tokens, stream):
    added, direct_all, gateway_all = [], [], []
    direct_auth = replica_auth(direct_url)  # the replica answers only with the run's secret
    # A fresh connection per request on both sides: llama-server closes a keep-alive
    # connection after a streamed response, and the next request on it would fail.
    fresh = {"Connection": "close"}
    with (
        httpx.Client(timeout=120, headers={**direct_auth, **fresh}) as direct,
        httpx.Client(timeout=120, headers=fresh) as gateway,
    ):
        for target, url in ((direct, direct_url), (gateway, gateway_url)):  # warm up
            one_request(target, url, prompt_for(99999, 9), max_tokens, stream)
        for i in range(pairs):
            order = [("d", direct, direct_url), ("g", gateway, gateway_url)]
            if i % 2:
                order.reverse()
            times = {}
            for side, (name, client, url) in enumerate(order):
                times[name] = one_request(client, url, prompt_for(i, side), max_tokens, stream)
            direct_all.append(times["d"])
            gateway_all.append(times["g"])
            added.append(times["g"] - times["d"])
    return direct_all, gateway_all, added


def throughput(url: str, requests: int, concurrency: int, max_tokens: int, offset: int) -> float:
    def worker(indices):
        headers = {**replica_auth(url), "Connection": "close"}  # see latency_pairs
        with httpx.Client(timeout=300, headers=headers) as client:
            for i in indices:
                one_request(client, url, prompt_for(offset + i, 2), max_tokens, False)

    chunks = [list(range(i, requests, concurrency)) for i in range(concurrency)]
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(worker, chunks))
    return requests / (time.perf_counter() - started)


def ms(value: float) -> str:
    return f"{value * 1000:8.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=int, default=60)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--block", type=int, default=24, help="requests per throughput block")
    parser.add_argument("--blocks", type=int, default=3, help="blocks per side")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="llama.cpp threads per replica (1: leave a core to the gateway, as a GPU engine does)",
    )
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="coderig-bench-"))
    # No load shedding: the throughput blocks queue on purpose, as they do on the direct path.
    server = start_server(
        workdir, "--replicas", "1", "--no-access-log", "--max-queue-wait", "off",
        "--threads-per-replica", str(args.threads),
    )  # fmt: skip
    try:
        replica_url = server.ready_info()["replicas"][0]["url"]
        direct_url = f"{replica_url}/v1/completions"
        gateway_url = f"{server.url}/v1/completions"
        cpu = subprocess.run(
            ["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        print(f"# gateway_overhead.py — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
        cores = len(os.sched_getaffinity(0))
        print(
            f"machine: {platform.machine()}, {cpu}, {cores} cores; "
            f"python {platform.python_version()}"
        )
        print(
            f"model: embedded SmolLM2-135M Q4_1, 1 llama.cpp replica x {args.threads} "
            f"thread(s); max_tokens={args.max_tokens} (forced with ignore_eos), temperature 0\n"
        )
        print("## Added latency (gateway - direct, same prompt, sequential pairs)\n")
        print("| client | pairs | direct p50 | gateway p50 | added p50 | added p99 | added mean |")
        print("|---|---|---|---|---|---|---|")
        for stream in (False, True):
            direct, gateway, added = latency_pairs(
                direct_url, gateway_url, args.pairs, args.max_tokens, stream
            )
            mode = "stream" if stream else "non-stream"
            print(
                f"| {mode} | {args.pairs} | {ms(statistics.median(direct))} "
                f"| {ms(statistics.median(gateway))} | {ms(statistics.median(added))} "
                f"| {ms(percentile(added, 99))} | {ms(statistics.mean(added))} |"
            )
        print(
            f"\n## Throughput ({args.concurrency} concurrent clients, {args.block} requests "
            f"per block, {args.blocks} blocks per side, alternating)\n"
        )
        direct_rates, gateway_rates = [], []
        for block in range(args.blocks):
            direct_rates.append(
                throughput(direct_url, args.block, args.concurrency, args.max_tokens, block * 100)
            )
            gateway_rates.append(
                throughput(
                    gateway_url, args.block, args.concurrency, args.max_tokens, block * 100 + 50
                )
            )
        d, g = statistics.mean(direct_rates), statistics.mean(gateway_rates)
        print("| path | req/s per block | mean req/s |")
        print("|---|---|---|")
        print(f"| direct | {', '.join(f'{r:.2f}' for r in direct_rates)} | {d:.2f} |")
        print(f"| gateway | {', '.join(f'{r:.2f}' for r in gateway_rates)} | {g:.2f} |")
        print(f"\nthroughput ratio gateway/direct: {g / d:.3f}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
