"""Fair queuing between developers: five developers sending at a normal rate and one at ten times
it, against `coderig serve` with fair queuing and slot shares (the default, `--share-slots`), fair
queuing alone (`--no-share-slots`), first-come-first-served (`--fifo-queuing`), and the five
alone (the quiet run), in one run.

Open loop: each developer sends Poisson arrivals (seeded) of distinct ~100-token code prompts cut
from the Python standard library, 16 output tokens (`ignore_eos`), non-streaming, identified by
the OpenAI `user` field (the gateway's flow when no API keys are set). Reported per run and
group: requests, answered, shed (429), latency p50 / p99 of the answered ones; then the five's
p99 with the noisy developer over their p99 in the quiet run. Goal: within 1.2x with fairness.

Usage: python benchmarks/fairness.py [--duration 60] [--quiet-rate 0.15] [--factor 10]
       [--slots 4] [--max-tokens 16]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time

import httpx
from common import machine_line, serve

from coderig.bench.corpus import Corpus, default_corpus_dir

PROMPT_CHARS = 400  # ~100 SmolLM2 tokens of Python source


def prompts(count: int, seed: int) -> list[str]:
    texts = [s.text for s in Corpus(default_corpus_dir()) if len(s.text) > 4 * PROMPT_CHARS]
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        text = rng.choice(texts)
        start = rng.randrange(0, len(text) - PROMPT_CHARS)
        out.append(text[start : start + PROMPT_CHARS])
    return out


async def developer(
    client: httpx.AsyncClient,
    url: str,
    name: str,
    rate: float,
    duration: float,
    texts: list[str],
    max_tokens: int,
    seed: int,
    results: list[tuple[str, int, float]],
) -> None:
    rng = random.Random(seed)
    start = time.monotonic()
    at = rng.expovariate(rate)
    tasks = []
    i = 0
    while at < duration:
        delay = start + at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        body = {
            "prompt": texts[i % len(texts)],
            "max_tokens": max_tokens,
            "ignore_eos": True,
            "temperature": 0,
            "user": name,
        }
        tasks.append(asyncio.create_task(one(client, url, name, body, results)))
        i += 1
        at += rng.expovariate(rate)
    await asyncio.gather(*tasks)


async def one(client, url, name, body, results) -> None:
    sent = time.monotonic()
    try:
        response = await client.post(url, json=body, timeout=300)
        status = response.status_code
    except httpx.HTTPError:
        status = 0
    results.append((name, status, time.monotonic() - sent))


async def run(url: str, args, noisy: bool) -> list[tuple[str, int, float]]:
    results: list[tuple[str, int, float]] = []
    texts = prompts(400, args.seed)
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=100)
    async with httpx.AsyncClient(limits=limits) as client:
        team = [
            developer(
                client,
                url,
                f"dev-{i}",
                args.quiet_rate,
                args.duration,
                texts[i * 50 :],
                args.max_tokens,
                args.seed + i,
                results,
            )  # fmt: skip
            for i in range(args.developers)
        ]
        if noisy:
            team.append(
                developer(
                    client,
                    url,
                    "noisy",
                    args.quiet_rate * args.factor,
                    args.duration,
                    texts[300:],
                    args.max_tokens,
                    args.seed + 99,
                    results,
                )  # fmt: skip
            )
        await asyncio.gather(*team)
    return results


def p(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


def row(label: str, group: str, results: list[tuple[str, int, float]]) -> tuple[str, float]:
    answered = [t for _, s, t in results if s == 200]
    shed = sum(1 for _, s, _ in results if s == 429)
    other = len(results) - len(answered) - shed
    p99 = p(answered, 0.99)
    print(
        f"| {label} | {group} | {len(results)} | {len(answered)} | {shed} | {other} | "
        f"{p(answered, 0.5):.3f}s | {p99:.3f}s |"
    )
    return group, p99


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--developers", type=int, default=5)
    parser.add_argument("--quiet-rate", type=float, default=0.15, help="req/s per developer")
    parser.add_argument("--factor", type=float, default=10.0, help="the noisy one's multiple")
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    print(f"# fairness.py — {machine_line()}")
    print(
        f"workload: {args.developers} developers at {args.quiet_rate:g} req/s each + one at "
        f"{args.factor:g}x, {args.duration:g}s, ~100-token prompts, {args.max_tokens} tokens; "
        f"coderig serve defaults (1 replica, --slots {args.slots}, admission on)\n"
    )
    print("| run | who | requests | answered | shed 429 | other | p50 | p99 |")
    print("|---|---|---|---|---|---|---|---|")
    p99s: dict[str, float] = {}
    for label, flags, noisy in (
        ("quiet (no noisy developer)", [], False),
        ("noisy, fair queuing", ["--no-share-slots"], True),
        ("noisy, fair queuing + share slots", ["--share-slots"], True),
        ("noisy, FIFO", ["--fifo-queuing"], True),
    ):
        server = serve("--slots", str(args.slots), *flags)
        try:
            results = asyncio.run(run(f"{server.base_url}/completions", args, noisy))
        finally:
            server.stop()
        quiet = [r for r in results if r[0] != "noisy"]
        _, p99s[label] = row(label, f"the {args.developers}", quiet)
        if noisy:
            row(label, "noisy", [r for r in results if r[0] == "noisy"])
    base = p99s["quiet (no noisy developer)"]
    print()
    for label in ("noisy, fair queuing", "noisy, fair queuing + share slots", "noisy, FIFO"):
        print(f"- the {args.developers}' p99, {label}: {p99s[label] / base:.2f}x the quiet run")


if __name__ == "__main__":
    main()
