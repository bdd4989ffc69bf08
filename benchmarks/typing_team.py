"""A team typing in editors (`coderig bench typing`) against one box: `coderig serve` with prefix
routing, `coderig serve` with least-busy routing, and the engine run directly, for teams of 2, 4
and 8 developers, in one run. Reported per run: requests, the share of suggestions that arrived
before the next keystroke (shown), cancelled and failed requests, shown latency, exact-match
acceptance, tokens generated for cancelled requests; then, per target, the largest team that
got at least 80% of its suggestions shown.

The engine run directly is any OpenAI- (or /infill-) compatible server: by default the
`llama-server` coderig runs, started with the arguments coderig gives it (all the box's threads,
`--slots` parallel slots) on the embedded model; `--engine-cmd` starts another one (placeholders
{port}, {model}, {threads}), for example:

    --engine-cmd 'llama-server -m {model} --port {port} -t {threads} -np 2 --cache-reuse 256'

and `--engine-url` uses one already running instead.

Usage: python benchmarks/typing_team.py [--developers 2,4,8] [--duration 60s]
       [--targets serve-prefix,serve-least-busy,engine] [--api openai] [--max-tokens 64]
       [--prefix-lines N]
       [--replicas 1] [--slots 4] [--threads 2] [--engine-cmd CMD | --engine-url URL]
       [--out-dir DIR]
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from common import machine_line, metric, metric_values, serve

from coderig.bench.results import write_results
from coderig.bench.typing import TypingConfig, run_typing
from coderig.bench.typing_report import summarize_typing
from coderig.engines.llamacpp import LlamaServerEngine
from coderig.engines.llamacpp_build import find_llama_server
from coderig.models import embedded_model_path
from coderig.serve.pool import free_port
from coderig.units import parse_duration

TARGETS = ("serve-prefix", "serve-least-busy", "engine")
SHOWN_TARGET = 0.80


def default_engine(threads: int, slots: int) -> LlamaServerEngine:
    found = find_llama_server(None)
    if found is None:
        raise SystemExit("no llama-server: run `coderig engine build` first")
    return LlamaServerEngine(
        binary=found.path, model_path=embedded_model_path(), threads=threads, slots=slots
    )


class Engine:
    """The engine as its own server: started from a command line, or already running."""

    def __init__(self, cmd: str | None, url: str | None, threads: int, slots: int, log_dir: Path):
        self.proc: subprocess.Popen | None = None
        if url:
            self.url = url.rstrip("/")
            return
        port = free_port()
        if cmd:
            argv = shlex.split(
                cmd.format(
                    python=shlex.quote(sys.executable),
                    model=shlex.quote(str(embedded_model_path())),
                    port=port,
                    threads=threads,
                )
            )
        else:
            argv = default_engine(threads, slots).launch(index=0, port=port).argv
        self.log = open(log_dir / f"engine-{port}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{port}"
        self.wait_ready()

    def wait_ready(self, timeout: float = 300.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"engine exited with {self.proc.returncode}; see {self.log.name}"
                )
            for path in ("/health", "/v1/models"):
                try:
                    if httpx.get(self.url + path, timeout=5).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
            time.sleep(0.5)
        raise TimeoutError(f"engine at {self.url} not ready after {timeout:g}s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def cache_counters(server) -> tuple[float, float]:
    """(prompt tokens, prompt tokens reused from a replica's cache) counted by the gateway."""
    values = metric_values(server)
    return (
        metric(values, "coderig_prompt_tokens_total"),
        metric(values, "coderig_prompt_cached_tokens_total"),
    )


def seconds(x: float) -> str:
    return "-" if x != x else f"{x:.3f}s"


def drain(url: str, gateway: bool) -> None:
    """Let the previous run's work finish before the next one starts."""
    if not gateway:
        time.sleep(3)
        return
    for _ in range(240):
        replicas = httpx.get(f"{url}/ready", timeout=10).json()["replicas"]
        if all(r["active"] == 0 and r["queued"] == 0 for r in replicas):
            return
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--developers", default="2,4,8")
    parser.add_argument("--duration", default="60s")
    parser.add_argument("--targets", default=",".join(TARGETS))
    parser.add_argument("--api", default="openai", help="openai or infill (both engines)")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument(
        "--prefix-lines", type=int, default=None, help="lines above the cursor [bench: 256]"
    )
    parser.add_argument("--replicas", type=int, default=1, help="coderig serve replicas")
    parser.add_argument("--slots", type=int, default=4, help="parallel slots per llama-server")
    parser.add_argument("--threads", type=int, default=2, help="threads of the whole box")
    parser.add_argument("--engine-cmd", default=None)
    parser.add_argument("--engine-url", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", default=None, help="keep each run's results file here")
    args = parser.parse_args()

    teams = [int(n) for n in args.developers.split(",")]
    duration = parse_duration(args.duration)
    targets = [t for t in args.targets.split(",") if t]
    unknown = set(targets) - set(TARGETS)
    if unknown:
        parser.error(f"unknown targets {sorted(unknown)}: use {', '.join(TARGETS)}")
    log_dir = Path(tempfile.mkdtemp(prefix="coderig-typing-"))
    out_dir = Path(args.out_dir) if args.out_dir else log_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    per_replica = max(1, args.threads // args.replicas)

    print("# typing_team.py —", machine_line())
    print(
        f"workload: coderig bench typing, {args.api} API, {args.max_tokens} max tokens, "
        f"{args.prefix_lines or 256} lines before the cursor, "
        f"{args.duration} per team, seed {args.seed}; coderig serve: {args.replicas} replicas x "
        f"{per_replica} thread(s) x {args.slots} slots; engine: "
        f"{args.engine_url or args.engine_cmd or f'llama-server, {args.slots} slots'}, "
        f"{args.threads} threads\n"
    )
    print(
        "| target | developers | requests | shown | cancelled | errors | shown p50 | shown p90 "
        "| shown p99 | accepted | wasted tokens | cached prompt |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    best: dict[str, int | None] = {}
    for target in targets:
        gateway = target.startswith("serve")
        if gateway:
            server = serve(
                "--replicas", str(args.replicas), "--threads-per-replica", str(per_replica),
                "--slots", str(args.slots), "--routing", target.removeprefix("serve-"),
                "--no-access-log",
            )  # fmt: skip
            url, stop = server.url, server.stop
        else:
            server = None
            engine = Engine(args.engine_cmd, args.engine_url, args.threads, args.slots, log_dir)
            url, stop = engine.url, engine.stop
        best[target] = None
        try:
            for developers in teams:
                config = TypingConfig(
                    url=url,
                    developers=developers,
                    duration=duration,
                    api=args.api,
                    max_tokens=args.max_tokens,
                    prefix_lines=args.prefix_lines,
                    seed=args.seed,
                    name=f"{target}-{developers}",
                    tags={"target": target},
                )
                before = cache_counters(server) if server else None
                header, results = run_typing(config)
                drain(url, gateway)
                with open(out_dir / f"{target}-{developers}.jsonl", "w", encoding="utf-8") as f:
                    write_results(f, header, results)
                s = summarize_typing(header, results)
                if s.shown_ratio >= SHOWN_TARGET:
                    best[target] = max(best[target] or 0, developers)
                lat = s.shown_latency
                if server and before:  # the gateway's counters: every request, cancelled too
                    prompt, hits = (
                        a - b for a, b in zip(cache_counters(server), before, strict=True)
                    )
                    cached = f"{hits / prompt:.1%}" if prompt else "n/a"
                else:  # what the engine reported in its answers
                    cached = f"{s.cached_ratio:.1%}" if s.cached_reported else "n/a"
                print(
                    f"| {target} | {developers} | {s.requests} | {s.shown_ratio:.1%} "
                    f"| {s.cancelled} | {s.errors} | {seconds(lat.p50)} | {seconds(lat.p90)} "
                    f"| {seconds(lat.p99)} | {s.accepted}/{s.comparable} | {s.wasted_tokens} "
                    f"| {cached} |",
                    flush=True,
                )
        finally:
            stop()
    print()
    for target, n in best.items():
        verdict = f"{n} developers" if n else f"none of {args.developers}"
        print(f"- {target}: largest team with >= {SHOWN_TARGET:.0%} shown: {verdict}")
    print(f"\nresults files: {out_dir}")


if __name__ == "__main__":
    main()
