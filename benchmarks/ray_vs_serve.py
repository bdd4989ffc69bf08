"""The same load against `coderig serve --replicas 2` and against the Ray Serve deployment with
2 replicas (`coderig deploy ray` on a private local cluster), then the cold start after scale
to zero on both. One run, one machine, the two sides one after the other.

Load: an open-loop constant-rate attack (latency: p50/p99) and a closed loop with a fixed number
of clients (throughput), both with fixed-length completions (``min_tokens`` = ``max_tokens``,
temperature 0) so the two sides do the same work.

Run from the repository root: ``PYTHONPATH=. python benchmarks/ray_vs_serve.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from tests.support.ray_cluster import start_ray
from tests.support.server import free_port, start_server

PROMPT = (
    "import os\nimport sys\n\n\ndef read_config(path):\n"
    '    """Read a key=value config file into a dict."""\n    result = {}\n'
)


def body(max_tokens: int, i: int) -> dict:
    # A different tail per request: no prompt-cache advantage for either side.
    return {
        "prompt": f"{PROMPT}    # request {i}\n",
        "max_tokens": max_tokens,
        "min_tokens": max_tokens,
        "temperature": 0,
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def open_loop(url: str, rate: float, seconds: float, max_tokens: int) -> dict:
    """Send at a constant rate regardless of answers; latency of each request."""
    latencies: list[float] = []
    errors = 0
    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=256)) as client:

        async def one(i: int) -> None:
            nonlocal errors
            started = time.monotonic()
            try:
                r = await client.post(f"{url}/v1/completions", json=body(max_tokens, i))
                if r.status_code == 200:
                    latencies.append(time.monotonic() - started)
                else:
                    errors += 1
            except httpx.HTTPError:
                errors += 1

        tasks = []
        start = time.monotonic()
        n = int(rate * seconds)
        for i in range(n):
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
        elapsed = time.monotonic() - start
    return {
        "sent": n,
        "ok": len(latencies),
        "errors": errors,
        "p50": statistics.median(latencies) if latencies else float("nan"),
        "p99": percentile(latencies, 99) if latencies else float("nan"),
        "elapsed": elapsed,
    }


async def closed_loop(url: str, clients: int, seconds: float, max_tokens: int) -> dict:
    """``clients`` callers back to back for ``seconds``: completed requests per second."""
    done = 0
    errors = 0
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(timeout=120) as client:

        async def caller(k: int) -> None:
            nonlocal done, errors
            i = 0
            while time.monotonic() < deadline:
                i += 1
                try:
                    r = await client.post(
                        f"{url}/v1/completions", json=body(max_tokens, k * 1000 + i)
                    )
                except httpx.HTTPError:
                    errors += 1
                    continue
                if r.status_code == 200:
                    done += 1
                else:
                    errors += 1

        started = time.monotonic()
        await asyncio.gather(*(caller(k) for k in range(clients)))
        elapsed = time.monotonic() - started
    return {"rps": done / elapsed, "done": done, "closed_errors": errors}


def cold_start(url: str, max_tokens: int) -> float:
    started = time.monotonic()
    r = httpx.post(f"{url}/v1/completions", json=body(max_tokens, 0), timeout=300)
    r.raise_for_status()
    return time.monotonic() - started


def warm(url: str, max_tokens: int) -> None:
    asyncio.run(closed_loop(url, 2, 5, max_tokens))


def measure(url: str, args) -> dict:
    warm(url, args.max_tokens)
    latency = asyncio.run(open_loop(url, args.rate, args.seconds, args.max_tokens))
    throughput = asyncio.run(closed_loop(url, args.clients, args.seconds, args.max_tokens))
    return {**latency, **throughput}


def wait_until(predicate, timeout: float) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise TimeoutError("condition not met")
        time.sleep(0.25)
    return time.monotonic() - started


def ray_replicas() -> int:
    count = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            count += b"ServeReplica:coderig:CoderigReplica" in cmdline
    return count


def bench_serve(args, tmp: Path) -> tuple[dict, float]:
    server = start_server(
        tmp,
        "--replicas", "2", "--threads-per-replica", "1",
        "--idle-shutdown", f"{args.idle}s", "--no-access-log",
    )  # fmt: skip
    try:
        result = measure(server.url, args)
        wait_until(lambda: server.ready_info().get("state") == "scaled_to_zero", args.idle + 60)
        return result, cold_start(server.url, args.max_tokens)
    finally:
        server.stop()


def bench_ray(args, tmp: Path) -> tuple[dict, float]:
    cluster = start_ray(tmp, num_cpus=2)
    port = free_port()
    try:
        deployed = cluster.deploy_coderig(port, args.idle)
        if deployed.returncode != 0:
            raise RuntimeError(f"coderig deploy ray failed:\n{deployed.stderr}")
        url = f"http://127.0.0.1:{port}"
        result = measure(url, args)
        wait_until(lambda: ray_replicas() == 0, args.idle + 120)
        return result, cold_start(url, args.max_tokens)
    finally:
        cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=1.2, help="open-loop requests/s")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=4, help="closed-loop callers")
    parser.add_argument("--max-tokens", type=int, default=24)
    parser.add_argument("--idle", type=float, default=10.0, help="scale-to-zero idle seconds")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="coderig-ray-bench-"))
    load_before = os.getloadavg()
    serve_result, serve_cold = bench_serve(args, tmp)
    ray_result, ray_cold = bench_ray(args, tmp)
    load_after = os.getloadavg()

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    print(f"# ray_vs_serve.py — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"machine: {cpu}, {os.cpu_count()} cores; python {platform.python_version()}")
    print(
        f"load average before/after: {load_before[0]:.2f} / {load_after[0]:.2f}; "
        f"model: embedded SmolLM2-135M Q4_1, 2 llama.cpp replicas x 1 thread on each side"
    )
    print(
        f"open loop: {args.rate:g} req/s for {args.seconds:g}s; closed loop: {args.clients} "
        f"clients for {args.seconds:g}s; {args.max_tokens} tokens per completion\n"
    )
    print("| side | sent | ok | errors | p50 s | p99 s | closed-loop req/s | cold start s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, r, cold in (
        ("coderig serve --replicas 2", serve_result, serve_cold),
        ("Ray Serve, 2 replicas", ray_result, ray_cold),
    ):
        errors = r["errors"] + r["closed_errors"]
        print(
            f"| {name} | {r['sent']} | {r['ok']} | {errors} | {r['p50']:.3f} "
            f"| {r['p99']:.3f} | {r['rps']:.2f} | {cold:.1f} |"
        )
    print(
        f"\nRay / serve: p50 x{ray_result['p50'] / serve_result['p50']:.2f}, "
        f"p99 x{ray_result['p99'] / serve_result['p99']:.2f}, "
        f"throughput x{ray_result['rps'] / serve_result['rps']:.2f}"
    )


if __name__ == "__main__":
    main()
