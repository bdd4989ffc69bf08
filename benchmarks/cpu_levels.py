"""llama-server built for each x86-64 instruction-set level coderig knows (AVX, AVX2): how
much faster is the level `coderig engine build` picks than the oldest, on this CPU?

Each level's build comes from the cache (`coderig engine build --level L` makes one). Every
build is started with the command line `coderig serve` gives its replicas, in one process set,
interleaved round by round (the first target of a round rotates), closed loop at 1 and 4
clients on distinct ~450-token prompts cut from real source files, `ignore_eos`, temperature 0.
Reported per level: latency p50, prefill tokens/s and decode tokens/s per request (from the
stream: prompt tokens over the time to first token, tokens after the first over the rest), and
the ratios to the AVX build measured in the same run.

Usage: python benchmarks/cpu_levels.py [--levels avx,avx2] [--clients 1,4] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from common import machine_line
from engine_compare import closed_loop_header, direct_llama_server, interleaved_rounds, prompts

from coderig.engines.llamacpp_build import BINARY, CPU_LEVELS, build_dir, build_flags, cpu_level


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--levels", default=",".join(reversed(list(CPU_LEVELS))))
    parser.add_argument("--clients", default="1,4")
    parser.add_argument("--requests", type=int, default=3, help="per client, per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    levels = [level for level in args.levels.split(",") if level]
    client_counts = [int(c) for c in args.clients.split(",")]
    binaries = {level: build_dir(flags=build_flags(level)) / BINARY for level in levels}
    missing = [level for level, path in binaries.items() if not path.exists()]
    if missing:
        raise SystemExit(f"no build for {missing}: run `coderig engine build --level L` first")
    print(f"# {machine_line()}; this CPU's level: {cpu_level()}")
    print(closed_loop_header(args))
    pool = prompts(sum(c * args.requests for c in client_counts) * args.rounds)
    work_dir = Path(tempfile.mkdtemp(prefix="cpu-levels-"))
    targets = [
        direct_llama_server(args.slots, args.threads, work_dir, name=level, binary=path)
        for level, path in binaries.items()
    ]
    runs, _ = interleaved_rounds(targets, pool, client_counts, args)
    print()
    print("| level | clients | requests | p50 | prefill tokens/s | decode tokens/s | p50 vs avx "
          "| prefill vs avx | decode vs avx |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    base = levels[0]
    for clients in client_counts:
        speeds = {level: _speeds(runs[(level, clients)]) for level in levels}
        for level in levels:
            p50, prefill, decode = speeds[level]
            b50, bprefill, bdecode = speeds[base]
            print(
                f"| {level} | {clients} | {len(runs[(level, clients)])} | {p50:.2f} s "
                f"| {prefill:.0f} | {decode:.1f} | {p50 / b50:.2f}x | {prefill / bprefill:.2f}x "
                f"| {decode / bdecode:.2f}x |"
            )


def _speeds(results: list[dict]) -> tuple[float, float, float]:
    """Median latency, prefill tokens/s (prompt over time to first token), decode tokens/s."""
    timed = [r for r in results if r["ttft"] is not None and r["latency"] > r["ttft"]]
    return (
        statistics.median(r["latency"] for r in results),
        statistics.median(r["prompt_tokens"] / r["ttft"] for r in timed),
        statistics.median((r["tokens"] - 1) / (r["latency"] - r["ttft"]) for r in timed),
    )


if __name__ == "__main__":
    main()
