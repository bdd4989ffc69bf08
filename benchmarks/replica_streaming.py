"""The replica server: llama-cpp-python's stock `llama_cpp.server` against coderig's
`coderig.engines.llamacpp_server` (the same app with its own SSE publisher), in one run,
alternating requests, streaming and not, on the embedded model.

Usage: python benchmarks/replica_streaming.py [--pairs 20] [--max-tokens 32] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import httpx
from common import machine_line

from coderig.models import embedded_model_path
from coderig.serve.pool import free_port

SERVERS = {
    "stock llama_cpp.server": "llama_cpp.server",
    "coderig replica": "coderig.engines.llamacpp_server",
}


def start(module: str, port: int, threads: int) -> subprocess.Popen:
    argv = [
        sys.executable, "-m", module, "--model", str(embedded_model_path()), "--host", "127.0.0.1",
        "--port", str(port), "--n_threads", str(threads), "--n_ctx", "2048",
        "--interrupt_requests", "false", "--verbose", "false",
    ]  # fmt: skip
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_up(port: int) -> None:
    for _ in range(300):
        try:
            httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"server on {port} did not start")


def one(client: httpx.Client, port: int, prompt: str, max_tokens: int, stream: bool) -> float:
    body = {
        "prompt": prompt, "max_tokens": max_tokens, "min_tokens": max_tokens,
        "temperature": 0, "stream": stream,
    }  # fmt: skip
    started = time.perf_counter()
    url = f"http://127.0.0.1:{port}/v1/completions"
    if stream:
        with client.stream("POST", url, json=body) as response:
            for _ in response.iter_lines():
                pass
    else:
        client.post(url, json=body).raise_for_status()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    ports = {name: free_port() for name in SERVERS}
    procs = [start(module, ports[name], args.threads) for name, module in SERVERS.items()]
    try:
        for port in ports.values():
            wait_up(port)
        times: dict[tuple[str, bool], list[float]] = {}
        with httpx.Client(timeout=120) as client:
            for i in range(args.pairs):
                for stream in (False, True):
                    order = list(SERVERS) if i % 2 else list(reversed(SERVERS))
                    for name in order:
                        prompt = f"def handler_{i}(request):\n"
                        elapsed = one(client, ports[name], prompt, args.max_tokens, stream)
                        times.setdefault((name, stream), []).append(elapsed)
        print("# replica_streaming.py —", machine_line())
        print(
            f"{args.pairs} alternating requests per cell, {args.max_tokens} tokens "
            f"(min_tokens), {args.threads} llama.cpp threads\n"
        )
        print("| server | client | p50 | mean |")
        print("|---|---|---|---|")
        for (name, stream), values in times.items():
            p50, mean = statistics.median(values) * 1000, statistics.mean(values) * 1000
            mode = "stream" if stream else "non-stream"
            print(f"| {name} | {mode} | {p50:.1f} ms | {mean:.1f} ms |")
    finally:
        for proc in procs:
            proc.kill()


if __name__ == "__main__":
    main()
