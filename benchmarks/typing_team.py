"""A team typing in editors (`coderig bench typing`) against one box, several servers in one run.

Each target is `coderig serve` (with any extra flags) or an engine run directly (any OpenAI- or
/infill-compatible server), for each team size. Reported per run: requests, the share of
suggestions that arrived before the next keystroke (shown), cancelled and failed requests, shown
latency, exact-match acceptance, tokens generated for cancelled requests, prompt tokens served
from cache; then, per target, the largest team that got at least 80% of its suggestions shown.

A target is `NAME=serve[:FLAGS]` or `NAME=engine[:CMD]`:

    --target 'coderig=serve:'                      coderig serve, its defaults
    --target 'no-window=serve:--stable-window-lines 0'
    --target 'llama-server=engine:llama-server -m {model} --port {port} -t {threads}'
    --target 'tuned=engine:'                       llama-server with the flags coderig gives it

An engine command's placeholders are {python}, {model} (the embedded GGUF), {port}, {threads};
`llama-server` is the binary `coderig engine build` made. `--engine-url` uses one already running
for every engine target. The default targets: serve-prefix, serve-least-busy, engine (coderig's
llama-server flags). `--params FILE` changes the typing model (benchmarks/steady_typist.toml is the
replay issue 18 describes).

Usage: python benchmarks/typing_team.py [--developers 2,4,8] [--duration 60s]
       [--target NAME=KIND[:ARGS]]... [--api openai|infill] [--max-tokens 64]
       [--prefix-lines N] [--params FILE]
       [--replicas 1] [--slots 4] [--threads 2] [--engine-url URL] [--out-dir DIR]
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

DEFAULT_TARGETS = (
    "serve-prefix=serve:--routing prefix",
    "serve-least-busy=serve:--routing least-busy",
    "engine=engine:",
)
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
        if argv and argv[0] == "llama-server":
            argv[0] = str(default_engine(threads, slots).binary)
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


def parse_target(spec: str) -> tuple[str, str, str]:
    """``NAME=KIND[:ARGS]`` -> (name, kind, args)."""
    name, sep, rest = spec.partition("=")
    kind, _, extra = rest.partition(":")
    if not sep or not name or kind not in ("serve", "engine"):
        raise ValueError(f"target {spec!r}: use NAME=serve[:FLAGS] or NAME=engine[:CMD]")
    return name, kind, extra.strip()


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
    parser.add_argument(
        "--target",
        action="append",
        dest="targets",
        default=None,
        help="NAME=serve[:FLAGS] or NAME=engine[:CMD]; repeatable (see the module docstring)",
    )
    parser.add_argument("--params", default=None, help="typing model parameters (TOML)")
    parser.add_argument("--api", default="openai", help="openai, infill, tabby or ollama")
    parser.add_argument(
        "--engine-api",
        default=None,
        help="the API engine targets are sent (default: --api); llama-server answers /infill "
        "only for models with FIM tokens, so the embedded model needs openai there",
    )
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument(
        "--prefix-lines", type=int, default=None, help="lines above the cursor [bench: 256]"
    )
    parser.add_argument("--replicas", type=int, default=1, help="coderig serve replicas")
    parser.add_argument("--slots", type=int, default=4, help="parallel slots per llama-server")
    parser.add_argument("--threads", type=int, default=2, help="threads of the whole box")
    parser.add_argument("--engine-url", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", default=None, help="keep each run's results file here")
    args = parser.parse_args()

    teams = [int(n) for n in args.developers.split(",")]
    duration = parse_duration(args.duration)
    try:
        targets = [parse_target(spec) for spec in args.targets or DEFAULT_TARGETS]
    except ValueError as exc:
        parser.error(str(exc))
    log_dir = Path(tempfile.mkdtemp(prefix="coderig-typing-"))
    out_dir = Path(args.out_dir) if args.out_dir else log_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    per_replica = max(1, args.threads // args.replicas)

    print("# typing_team.py —", machine_line())
    print(
        f"workload: coderig bench typing, {args.api} API "
        f"({args.engine_api or args.api} to engines), {args.max_tokens} max tokens, "
        f"{args.prefix_lines or 'the model’s'} lines before the cursor, "
        f"typing model {args.params or 'default'}, "
        f"{args.duration} per team, seed {args.seed}; coderig serve: {args.replicas} replicas x "
        f"{per_replica} thread(s) x {args.slots} slots; engines: {args.threads} threads"
    )
    for name, kind, extra in targets:
        print(f"- {name}: {kind} {extra or '(defaults)'}")
    print()
    print(
        "| target | developers | requests | shown | cancelled | errors | shown p50 | shown p90 "
        "| shown p99 | accepted | wasted tokens | cached prompt |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    best: dict[str, int | None] = {}
    for target, kind, extra in targets:
        gateway = kind == "serve"
        if gateway:
            server = serve(
                "--replicas", str(args.replicas), "--threads-per-replica", str(per_replica),
                "--slots", str(args.slots), "--no-access-log", *shlex.split(extra),
            )  # fmt: skip
            url, stop = server.url, server.stop
        else:
            server = None
            engine = Engine(extra or None, args.engine_url, args.threads, args.slots, log_dir)
            url, stop = engine.url, engine.stop
        best[target] = None
        try:
            for developers in teams:
                config = TypingConfig(
                    url=url,
                    developers=developers,
                    duration=duration,
                    api=args.api if gateway else (args.engine_api or args.api),
                    max_tokens=args.max_tokens,
                    prefix_lines=args.prefix_lines,
                    params_file=args.params,
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
