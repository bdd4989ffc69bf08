"""The CPU engine under load: `coderig serve` against the `llama-server` it runs, started directly
with the same arguments, and against the previous engine (`coderig serve` at an earlier
revision, checked out in a temporary git worktree), in one run, interleaved.

Closed loop: C clients each send a request as soon as their previous one is answered; every
request is a distinct ~450-token prompt cut from a real source file (the Python standard library)
with `max_tokens` output tokens, temperature 0 and `ignore_eos`, so every server does the same
work. For each number of clients, each round runs every server in turn (the order rotates), and
the prompts of a round are new to every server. Reported per server and client count: requests,
req/s, latency p50 / p90 (full response), time to first token p50, and the ratios to the direct
`llama-server`.

The previous engine runs llama-cpp-python's server: `pip install 'llama-cpp-python[server]'`
first (coderig itself no longer needs those extras).

Usage: python benchmarks/engine_compare.py [--clients 1,4,8] [--requests 2] [--rounds 2]
       [--max-tokens 32] [--previous REV | --previous none] [--slots 4]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from common import ROOT, machine_line, start_server

from coderig.bench.corpus import Corpus, default_corpus_dir
from coderig.engines.llamacpp import LlamaServerEngine
from coderig.engines.llamacpp_build import find_llama_server
from coderig.models import embedded_model_path
from coderig.serve.pool import free_port

PROMPT_CHARS = 1800  # ~450 SmolLM2 tokens of Python source


def prompts(count: int) -> list[str]:
    """Distinct prompts: the first PROMPT_CHARS of successive large enough source files."""
    corpus = Corpus(default_corpus_dir())
    found: list[str] = []
    for source in corpus:
        if len(source.text) >= PROMPT_CHARS:
            found.append(source.text[:PROMPT_CHARS])
        if len(found) == count:
            return found
    raise RuntimeError(f"only {len(found)} source files of {PROMPT_CHARS}+ characters")


class Target:
    """A server under test: a name, its OpenAI base URL, and how to stop it."""

    def __init__(self, name: str, base_url: str, stop: Callable[[], None]):
        self.name, self.base_url, self.stop = name, base_url, stop


def direct_llama_server(
    slots: int,
    threads: int,
    log_dir: Path,
    extra_args: list[str] | None = None,
    name: str = "llama-server (direct)",
    binary: Path | None = None,
) -> Target:
    """llama-server (``binary``, else the one `coderig serve` finds) started with the command
    line `coderig serve` gives its replicas."""
    found = find_llama_server(binary)
    if found is None:
        raise SystemExit("no llama-server: run `coderig engine build` first")
    port = free_port()
    engine = LlamaServerEngine(
        binary=found.path,
        model_path=embedded_model_path(),
        threads=threads,
        slots=slots,
        extra_args=list(extra_args or []),
    )
    log = open(log_dir / f"llama-server-{port}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(engine.launch(index=0, port=port).argv, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    else:
        raise RuntimeError(f"llama-server did not start; see {log.name}")

    def stop() -> None:
        proc.terminate()
        proc.wait(20)

    return Target(name, f"{url}/v1", stop)


def coderig_serve(
    name: str, args: list[str], env: dict | None = None, cwd: Path | None = None
) -> Target:
    """Admission control off, as the load is closed loop: every request waits its turn."""
    logs = Path(tempfile.mkdtemp(prefix="coderig-bench-"))
    server = start_server(logs, "--max-queue-wait", "off", *args, env=env, cwd=cwd)
    return Target(name, server.base_url, server.stop)


def previous_serve(rev: str, work: Path) -> Target:
    tree = work / "previous"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), rev],
        check=True, capture_output=True,
    )  # fmt: skip
    # run from the worktree: `python -m` puts the working directory first on sys.path
    target = coderig_serve(f"coderig serve @{rev[:7]}", [], env={"PYTHONPATH": str(tree)}, cwd=tree)
    stop = target.stop

    def stop_and_remove() -> None:
        stop()
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)])

    target.stop = stop_and_remove
    return target


def one_request(client: httpx.Client, base_url: str, prompt: str, max_tokens: int) -> dict:
    body = {
        "prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
        "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True},
    }  # fmt: skip
    started = time.perf_counter()
    first = None
    tokens = prompt_tokens = 0
    texts: list[str] = []
    # A fresh connection per request, for every server alike: llama-server (this version)
    # closes a keep-alive connection after a streamed response without saying so, and the next
    # request sent on it fails ("Server disconnected without sending a response").
    headers = {"Connection": "close"}
    with client.stream("POST", f"{base_url}/completions", json=body, headers=headers) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            text = chunk["choices"][0].get("text") if chunk.get("choices") else None
            if text:
                texts.append(text)
                first = first or time.perf_counter() - started
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
                prompt_tokens = chunk["usage"].get("prompt_tokens", 0)
    return {
        "latency": time.perf_counter() - started,
        "ttft": first,
        "tokens": tokens,
        "prompt_tokens": prompt_tokens,
        "text": "".join(texts),
        "prompt": prompt,
    }


def closed_loop(target: Target, work: list[str], clients: int, max_tokens: int) -> dict:
    """`clients` threads take prompts from `work` until none is left; returns the results."""
    queue = list(work)
    lock = threading.Lock()
    results: list[dict] = []
    errors: list[str] = []

    def client_loop() -> None:
        with httpx.Client(timeout=600) as client:
            while True:
                with lock:
                    if not queue:
                        return
                    prompt = queue.pop()
                try:
                    results.append(one_request(client, target.base_url, prompt, max_tokens))
                except httpx.HTTPError as exc:
                    errors.append(str(exc))

    started = time.perf_counter()
    threads = [threading.Thread(target=client_loop) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"wall": time.perf_counter() - started, "results": results, "errors": errors}


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", default="1,4,8")
    parser.add_argument("--requests", type=int, default=2, help="per client, per round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--previous", default="3daa89e", help="git revision, or 'none'")
    args = parser.parse_args()
    client_counts = [int(c) for c in args.clients.split(",")]
    print(f"# {machine_line()}")
    print(
        f"# closed loop, {args.rounds} rounds x {args.requests} requests per client, "
        f"~450-token prompts, {args.max_tokens} tokens, slots {args.slots}, "
        f"threads {args.threads}"
    )
    needed = sum(c * args.requests for c in client_counts) * args.rounds
    pool = prompts(needed)
    work_dir = Path(tempfile.mkdtemp(prefix="engine-compare-"))
    targets = [direct_llama_server(args.slots, args.threads, work_dir)]
    targets.append(coderig_serve("coderig serve", ["--slots", str(args.slots)]))
    if args.previous != "none":
        targets.append(previous_serve(args.previous, work_dir))
    runs, walls = interleaved_rounds(targets, pool, client_counts, args)
    print()
    columns = "server clients requests req/s p50 p90 TTFT_p50 req/s_vs_direct p50_vs_direct"
    print("| " + " | ".join(c.replace("_", " ") for c in columns.split()) + " |")
    print("|---|---|---|---|---|---|---|---|---|")
    for clients in client_counts:
        base = targets[0].name
        base_rate = len(runs[(base, clients)]) / walls[(base, clients)]
        base_p50 = statistics.median(r["latency"] for r in runs[(base, clients)])
        for target in targets:
            results = runs[(target.name, clients)]
            rate = len(results) / walls[(target.name, clients)]
            latencies = [r["latency"] for r in results]
            ttfts = [r["ttft"] for r in results if r["ttft"] is not None]
            short = [r for r in results if r["tokens"] and r["tokens"] != args.max_tokens]
            note = f" ({len(short)} short)" if short else ""
            print(
                f"| {target.name} | {clients} | {len(results)}{note} | {rate:.2f} | "
                f"{statistics.median(latencies):.2f} s | {quantile(latencies, 0.9):.2f} s | "
                f"{statistics.median(ttfts):.2f} s | {rate / base_rate:.2f}x | "
                f"{statistics.median(latencies) / base_p50:.2f}x |"
            )


def closed_loop_header(args) -> str:
    """The comment line that says how a closed-loop comparison ran."""
    return (
        f"# closed loop, {args.rounds} rounds x {args.requests} requests per client, "
        f"~450-token prompts, {args.max_tokens} tokens (ignore_eos), slots {args.slots}, "
        f"threads {args.threads}"
    )


def interleaved_rounds(
    targets: list[Target], pool: list[str], client_counts: list[int], args
) -> tuple[dict[tuple[str, int], list[dict]], dict[tuple[str, int], float]]:
    """Every target takes the same prompts, round by round and client count by client count,
    the first target of a round rotating (a shared machine's drift falls on all alike); the
    targets are stopped at the end. Returns the results and wall seconds per (target, clients).
    """
    runs: dict[tuple[str, int], list[dict]] = {}
    walls: dict[tuple[str, int], float] = {}
    try:
        for round_index in range(args.rounds):
            for clients in client_counts:
                work = [pool.pop() for _ in range(clients * args.requests)]
                shift = round_index % len(targets)
                for target in targets[shift:] + targets[:shift]:
                    run = closed_loop(target, work, clients, args.max_tokens)
                    if run["errors"]:
                        print(f"# {target.name} x{clients}: errors {run['errors'][:3]}")
                    key = (target.name, clients)
                    runs.setdefault(key, []).extend(run["results"])
                    walls[key] = walls.get(key, 0.0) + run["wall"]
                    print(
                        f"# round {round_index + 1} {target.name} x{clients}: "
                        f"{len(run['results'])} in {run['wall']:.1f}s"
                    )
    finally:
        for target in targets:
            target.stop()
    return runs, walls


if __name__ == "__main__":
    main()
