"""Cache-aware routing for a team typing: `--routing least-busy` against `--routing prefix`.

A simulated team: each developer edits their own real source file (from the Python standard
library on this machine) and asks for a completion every few keystrokes, so each request's
prompt is the previous one plus a few more characters. Requests from all developers interleave
(Poisson arrivals). Both routings run on the same scripted workload, in one run, on the
embedded model with 2 llama.cpp replicas, with and without a RAM prompt cache per replica
(`--prompt-cache`, llama-server's `--cache-ram`): without it a replica keeps only the prompts
still in its slots. Reported: p50
and p99 latency, and the prompt-cache hit rate (prompt tokens the engine reused instead of
prefilling, from /metrics).

Usage: python benchmarks/prefix_routing.py [--developers 6] [--requests-each 12] [--rate 1]
"""

from __future__ import annotations

import argparse
import json
import random
import sysconfig
import tempfile
import time
from pathlib import Path

import httpx
from common import machine_line, metric, metric_values, serve

from coderig.bench.attack import AttackConfig, run_attack
from coderig.bench.report import summarize
from coderig.bench.workload import WorkloadSpec, read_bodies

FILES = ["json/decoder.py", "textwrap.py", "csv.py", "shlex.py", "fractions.py", "heapq.py",
         "bisect.py", "glob.py", "difflib.py", "argparse.py"]  # fmt: skip


def typing_bodies(developers: int, each: int, start_chars: int, step_chars: int, seed: int):
    """One body per request: developer d's file up to a cursor that moves on each time."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    sources = [(stdlib / name).read_text() for name in FILES[:developers]]
    rng = random.Random(seed)
    cursors = [start_chars] * developers
    bodies = []
    for _ in range(each):
        order = list(range(developers))
        rng.shuffle(order)
        for dev in order:
            prompt = sources[dev][: cursors[dev]]
            cursors[dev] += step_chars
            bodies.append(json.dumps({"prompt": prompt, "max_tokens": 8, "ignore_eos": True}))
    return bodies


def drain(server) -> None:
    for _ in range(600):
        replicas = httpx.get(f"{server.url}/ready", timeout=10).json()["replicas"]
        if all(r["active"] == 0 and r["queued"] == 0 for r in replicas):
            return
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--developers", type=int, default=6)
    parser.add_argument("--requests-each", type=int, default=12)
    parser.add_argument("--rate", type=float, default=1.0, help="requests/s, whole team")
    parser.add_argument("--start-chars", type=int, default=1200, help="~300 tokens")
    parser.add_argument("--step-chars", type=int, default=12, help="typed between requests")
    parser.add_argument("--prompt-caches", default="0,256MiB")
    args = parser.parse_args()

    bodies_file = Path(tempfile.mkdtemp(prefix="coderig-typing-")) / "typing.jsonl"
    bodies_file.write_text(
        "\n".join(
            typing_bodies(args.developers, args.requests_each, args.start_chars, args.step_chars, 1)
        )
    )
    bodies = read_bodies(str(bodies_file))
    print("# prefix_routing.py —", machine_line())
    print(
        f"workload: {args.developers} developers x {args.requests_each} requests, each prompt "
        f"= the previous one + {args.step_chars} chars (start {args.start_chars} chars), "
        f"8 output tokens; Poisson {args.rate} req/s; 2 replicas x 1 thread\n"
    )
    print(
        "| prompt cache | routing | requests | success | p50 | p99 | cache hit rate "
        "| routed by prefix/session |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for cache in args.prompt_caches.split(","):
        for routing in ("least-busy", "prefix"):
            server = serve(
                "--replicas", "2", "--threads-per-replica", "1", "--no-access-log",
                "--routing", routing, "--prompt-cache", cache, "--max-queue-wait", "off",
            )  # fmt: skip
            try:
                config = AttackConfig(
                    url=f"{server.base_url}/completions",
                    rate=args.rate,
                    requests=len(bodies),
                    arrival="poisson",
                    seed=3,
                    timeout=300.0,
                    stream=False,
                    workload=WorkloadSpec(bodies=bodies, body_file=str(bodies_file)),
                )
                header, results = run_attack(config)
                drain(server)
                s = summarize(header, results)
                values = metric_values(server)
                prompt = metric(values, "coderig_prompt_tokens_total")
                cached = metric(values, "coderig_prompt_cached_tokens_total")
                sticky = metric(values, "coderig_routed_requests_total", reason="prefix") + metric(
                    values, "coderig_routed_requests_total", reason="session"
                )
                print(
                    f"| {cache} | {routing} | {s['requests']} | {s['success']:.1%} "
                    f"| {s['latencies']['50th']:.3f}s | {s['latencies']['99th']:.3f}s "
                    f"| {cached / prompt:.1%} | {sticky:.0f} |",
                    flush=True,
                )
            finally:
                server.stop()


if __name__ == "__main__":
    main()
