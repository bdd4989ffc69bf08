"""Speculative decoding in llama-server for code completion: does it make a replica faster here?

llama-server drafts tokens without a second model by looking up n-grams in the context
(`--spec-type ngram-simple`, `ngram-mod`, `ngram-map-k`, `ngram-cache`); code repeats itself
(identifiers, call patterns, boilerplate), so drafts may be accepted often. Each variant is a
llama-server started with the command line `coderig serve` gives its replicas plus
`--spec-type T`; all run in one process set, interleaved round by round, closed loop at 1 and 4
clients, on distinct ~450-token prompts cut from real source files, temperature 0 and
`ignore_eos` so every variant generates the same number of tokens. Reported: latency p50, tokens
per second per request, the ratios to no speculation, and how many outputs are identical to the
no-speculation ones (greedy speculation must not change the text).

A draft *model* (`--spec-type draft-simple --model-draft`) needs a smaller model with the same
vocabulary than the one served; SmolLM2-135M is the smallest of its family, so it is not tried.

Usage: python benchmarks/speculative.py [--types ngram-simple,ngram-mod,ngram-map-k,ngram-cache]
       [--clients 1,4] [--requests 3] [--rounds 2] [--max-tokens 64]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from common import machine_line
from engine_compare import closed_loop_header, direct_llama_server, interleaved_rounds, prompts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--types", default="ngram-simple,ngram-mod,ngram-map-k,ngram-cache")
    parser.add_argument("--clients", default="1,4")
    parser.add_argument("--requests", type=int, default=3, help="per client, per round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    client_counts = [int(c) for c in args.clients.split(",")]
    kinds = ["none", *[t for t in args.types.split(",") if t]]
    print(f"# {machine_line()}")
    print(closed_loop_header(args))
    pool = prompts(sum(c * args.requests for c in client_counts) * args.rounds)
    work_dir = Path(tempfile.mkdtemp(prefix="speculative-"))
    targets = [
        direct_llama_server(
            args.slots,
            args.threads,
            work_dir,
            extra_args=[] if kind == "none" else ["--spec-type", kind],
            name=kind,
        )  # fmt: skip
        for kind in kinds
    ]
    runs, walls = interleaved_rounds(targets, pool, client_counts, args)
    print()
    print("| --spec-type | clients | requests | p50 | tokens/s per request | p50 vs none "
          "| req/s vs none | same text as none |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for clients in client_counts:
        base = runs[("none", clients)]
        base_text = {r["prompt"]: r["text"] for r in base}
        base_p50 = statistics.median(r["latency"] for r in base)
        base_rate = len(base) / walls[("none", clients)]
        for kind in kinds:
            results = runs[(kind, clients)]
            p50 = statistics.median(r["latency"] for r in results)
            speed = statistics.median(
                r["tokens"] / (r["latency"] - r["ttft"])
                for r in results
                if r["ttft"] is not None and r["latency"] > r["ttft"]
            )
            same = sum(base_text.get(r["prompt"]) == r["text"] for r in results)
            rate = len(results) / walls[(kind, clients)]
            print(
                f"| {kind} | {clients} | {len(results)} | {p50:.2f} s | {speed:.1f} "
                f"| {p50 / base_p50:.2f}x | {rate / base_rate:.2f}x | {same}/{len(results)} |"
            )


if __name__ == "__main__":
    main()
