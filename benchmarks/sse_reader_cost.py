"""What reading a token stream costs the load generator: bench's aiohttp client with its own
``data:`` line parser (coderig.bench.streams) against httpx with httpx-sse, on the same fake
server, alternating, in one run; and whether either delays the first token event.

CPU is the client process's own (``time.process_time``) per streamed request; the fake server
runs in another process. httpx-sse is not a coderig dependency: ``pip install httpx-sse`` first.

Usage: python benchmarks/sse_reader_cost.py [--requests 600] [--tokens 20] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from coderig.bench.streams import openai_text, sse_json  # noqa: E402
from tests.bench_helpers.fixtures import start_server  # noqa: E402

try:
    from httpx_sse import EventSource
except ImportError:  # pragma: no cover - a benchmark prerequisite, not coderig's
    sys.exit("this benchmark compares against httpx-sse: pip install httpx-sse")

BODY = json.dumps({"prompt": "x", "max_tokens": 20, "stream": True}).encode()
HEADERS = {"Content-Type": "application/json"}
Reader = Callable[[str, int, int], Awaitable[list[float]]]


async def aiohttp_lines(url: str, n: int, concurrency: int) -> list[float]:
    """What the attack does: aiohttp's line iterator and :func:`sse_json` per line."""
    gate, ttfts = asyncio.Semaphore(concurrency), []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def one() -> None:
            async with gate:
                t0, first = time.perf_counter(), None
                async with session.post(url, data=BODY, headers=HEADERS) as resp:
                    async for line in resp.content:
                        obj = sse_json(line)
                        if obj and openai_text(obj) and first is None:
                            first = time.perf_counter() - t0
                ttfts.append(first)

        await asyncio.gather(*(one() for _ in range(n)))
    return ttfts


async def httpx_sse_events(url: str, n: int, concurrency: int) -> list[float]:
    """The same with httpx's streaming client and httpx-sse's event parser."""
    gate, ttfts = asyncio.Semaphore(concurrency), []
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def one() -> None:
            async with gate:
                t0, first = time.perf_counter(), None
                async with client.stream("POST", url, content=BODY, headers=HEADERS) as resp:
                    async for event in EventSource(resp).aiter_sse():
                        if event.data != "[DONE]" and openai_text(json.loads(event.data)):
                            first = first if first is not None else time.perf_counter() - t0
                ttfts.append(first)

        await asyncio.gather(*(one() for _ in range(n)))
    return ttfts


def measure(reader: Reader, url: str, n: int, concurrency: int) -> tuple[float, list[float]]:
    """(client CPU ms per request, first-token times)."""
    cpu = time.process_time()
    ttfts = asyncio.run(reader(url, n, concurrency))
    return (time.process_time() - cpu) / n * 1e3, ttfts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--tokens", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    readers: dict[str, Reader] = {
        "aiohttp + sse_json": aiohttp_lines,
        "httpx + httpx-sse": httpx_sse_events,
    }
    proc, base = start_server()
    try:
        fast = f"{base}/v1/completions?tokens={args.tokens}&interval=0"
        cpu: dict[str, list[float]] = {name: [] for name in readers}
        for _ in range(args.repeats):
            for name, reader in readers.items():
                cpu[name].append(measure(reader, fast, args.requests, args.concurrency)[0])
        print(f"client CPU per streamed request ({args.tokens} tokens), median of {args.repeats}:")
        for name, values in cpu.items():
            runs = ", ".join(f"{v:.3f}" for v in values)
            print(f"  {name:20s} {statistics.median(values):.3f} ms  (runs: {runs})")
        slow = f"{base}/v1/completions?tokens=3&interval=0.2&delay=0.1"
        print("first token event, server sends it 100 ms after the request:")
        for name, reader in readers.items():
            ttfts = measure(reader, slow, 5, 5)[1]
            print(f"  {name:20s} " + ", ".join(f"{t * 1e3:.1f} ms" for t in ttfts))
    finally:
        proc.terminate()


if __name__ == "__main__":
    main()
