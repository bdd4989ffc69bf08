"""Does `coderig plan predict --hardware local` predict what `coderig bench` then measures here?

The one end-to-end check of the planner that needs no rented GPU (issue 13, item 4). On this
machine, in one run, case after case:

1. `coderig plan probe`: `coderig serve` with its defaults, timed alone with streamed requests
   (a request's overhead, a lone prompt, one and all slots decoding);
2. per rate, a fresh `coderig serve` with its defaults on the embedded model and `coderig bench
   attack` against it (open loop, distinct generated prompts of the model's own tokens, exactly
   --max-tokens out);
3. per team size, a fresh `coderig serve` and `coderig bench typing` against it (the `/infill`
   API, so the gateway's stable windows apply);
4. a probe again after each case. The case is predicted from the probes before and after it
   (`plan predict --hardware local`, and `--workload typing` with the same script: same traffic
   code and seed), and compared with the mean of the two predictions. Nothing measured under
   load goes into a prediction; the typing prediction takes the completion length measured
   (the gateway's editor rules end suggestions early: that is the model's text, not the
   hardware).

    python benchmarks/local_plan_check.py --rates 0.25,0.4,0.55 --duration 90 \
        --developers 4,8,12 --typing-duration 60 --typing-params benchmarks/steady_typist.toml"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time

from common import machine_line, serve

from coderig.bench.attack import AttackConfig, run_attack
from coderig.bench.metrics import Metrics
from coderig.bench.workload import WorkloadSpec
from coderig.models import embedded_model_path
from coderig.plan.local import predict_local, probe_summary, run_probe
from coderig.plan.simulate import Workload


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="0.2,0.4,0.6,0.8", help="requests/s, comma list")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per rate")
    parser.add_argument("--prompt-tokens", type=int, default=256)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--arrival", choices=["constant", "poisson"], default="poisson")
    parser.add_argument("--developers", default="", help="typing teams to check, comma list")
    parser.add_argument("--typing-duration", type=float, default=60.0)
    parser.add_argument("--typing-params", help="typing-model TOML (bench typing --params)")
    parser.add_argument("--typing-max-tokens", type=int, default=16)
    parser.add_argument("--typing-seed", type=int, default=10, help="the first team's seed")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",") if r]
    teams = [int(d) for d in args.developers.split(",") if d]

    print(machine_line())
    print(
        "each case is predicted from the probe just before it and the one just after it, and "
        "compared with their mean: a shared machine's speed drifts by tens of percent within "
        "minutes"
    )
    probes = Probes(embedded_model_path())
    if rates:
        check_attack(probes, rates, args)
    if teams:
        check_typing(probes, teams, args)


class Probes:
    """`coderig plan probe` between cases: the probe after one case is the one before the next."""

    def __init__(self, model_path) -> None:
        self.model_path = model_path
        self.last = None

    def next(self):
        self.last = run_probe(
            self.model_path,
            threads=os.cpu_count() or 1,
            slots=4,
            batch_size=512,
            n_ctx=4096,
            say=lambda text: print(f"  probe: {text}", file=sys.stderr),
        )
        print(f"  probe {time.strftime('%H:%M:%S', time.gmtime())}: {probe_summary(self.last)}")
        return self.last

    def around(self, case):
        """Run ``case()``; its result and the probes (before, after)."""
        before = self.last or self.next()
        result = case()
        return result, (before, self.next())


def check_attack(probes: Probes, rates: list[float], args) -> None:
    print(
        f"\nattack: {args.arrival} arrivals, {args.duration:g} s per rate, {args.prompt_tokens}"
        f"-token distinct code prompts, {args.max_tokens} tokens out (ignore_eos), streamed"
    )
    header = (
        f"{'rate':>5} {'reqs':>4} {'ok':>4} | {'measured p50':>12} {'p90':>6} {'TTFT p50':>8} | "
        f"{'predicted p50':>13} {'p90':>6} {'TTFT p50':>8} | {'p50 error':>9}"
    )
    rows, errors = [], []
    for i, rate in enumerate(rates):
        config = AttackConfig(
            url="",  # the server each case starts
            rate=rate,
            duration=args.duration,
            arrival=args.arrival,
            seed=i + 1,
            timeout=120.0,
            stream=True,
            workload=WorkloadSpec(
                prompt_tokens=args.prompt_tokens,
                max_tokens=args.max_tokens,
                ignore_eos=True,
                stream=True,
                tokenizer=str(probes.model_path),
                seed=i + 1,
            ),
        )
        (head, results), both = probes.around(
            lambda config=config: on_fresh_server(run_attack, config, "/v1/completions")
        )
        m = Metrics.of(head, results)
        ok = [r for r in results if r.get("status") == 200 and not r.get("error")]
        prompt = round(statistics.mean(r["prompt_tokens"] for r in ok)) if ok else 0
        out = round(statistics.mean(r["completion_tokens"] for r in ok)) if ok else 0
        workload = Workload(
            rate=rate,
            duration=args.duration,
            prompt_tokens=prompt or args.prompt_tokens,
            output_tokens=out or args.max_tokens,
            arrival=args.arrival,
            seed=config.seed,
        )
        predicted = [predict_local(probe, workload).result for probe in both]
        p50, p90, ttft = (
            statistics.mean(getattr(p, name) for p in predicted)
            for name in ("latency_p50", "latency_p90", "ttft_p50")
        )
        measured = sorted(r["end"] - r["sent"] for r in ok)
        m50 = statistics.median(measured)
        m90 = statistics.quantiles(measured, n=10)[-1] if len(measured) > 1 else m50
        errors.append(abs(p50 / m50 - 1))
        rows.append(
            f"{rate:5.2f} {m.requests:4d} {len(ok):4d} | {m50:12.3f} {m90:6.3f} "
            f"{m.ttft.p50:8.3f} | {p50:13.3f} {p90:6.3f} {ttft:8.3f} | {p50 / m50 - 1:+9.1%}"
        )
    print("\n".join([header, "-" * len(header), *rows]))
    print(f"\np50 error: median {statistics.median(errors):.1%}, max {max(errors):.1%}")


def on_fresh_server(run, config, path: str = ""):
    """``run(config)`` against a `coderig serve` of its own: llama-server's prompt cache
    (--cache-ram) would otherwise serve a case's prompts from the previous case's run."""
    server = serve()
    try:
        return run(dataclasses.replace(config, url=server.url + path))
    finally:
        server.stop()


def completion_lengths(results: list[dict], asked: int) -> tuple[int, list[int]]:
    """How long each suggestion of the run came out, in the script's order (the simulated
    team sends the same requests: same traffic code, same seed). A suggestion the next
    keystroke cancelled was cut by it, which the simulation does itself, so it gets the mean
    length of those that finished; so does one the engine reported no count for."""
    ordered = sorted(results, key=lambda r: r["scheduled"])
    lengths = [r.get("completion_tokens") if r["outcome"] != "cancelled" else None for r in ordered]
    finished = [n for n in lengths if n]
    mean = round(statistics.mean(finished)) if finished else asked
    return mean, [n or mean for n in lengths]


def check_typing(probes: Probes, teams: list[int], args) -> None:
    from coderig.bench.typing import TypingConfig, run_typing
    from coderig.bench.typing_report import summarize_typing
    from coderig.plan.typing_load import local_engine, predict_typing

    print(
        f"\ntyping: bench typing --api infill, {args.typing_duration:g} s per team, "
        f"{args.typing_max_tokens} tokens asked per suggestion"
        + (f", params {args.typing_params}" if args.typing_params else "")
    )
    header = (
        f"{'devs':>4} {'seed':>4} {'reqs':>4} | {'measured shown':>14} {'p50':>6} {'tokens':>6} | "
        f"{'predicted shown':>15} {'p50':>6} | {'p50 error':>9}"
    )
    rows, errors = [], []
    for i, developers in enumerate(teams):
        config = TypingConfig(
            url="",  # the server each case starts
            developers=developers,
            duration=args.typing_duration,
            api="infill",
            max_tokens=args.typing_max_tokens,
            seed=args.typing_seed + i,
            params_file=args.typing_params,
        )
        (header_, results), both = probes.around(
            lambda config=config: on_fresh_server(run_typing, config)
        )
        s = summarize_typing(header_, results)
        shown = [r for r in results if r["outcome"] == "shown"]
        out, outputs = completion_lengths(results, args.typing_max_tokens)
        predicted = [
            predict_typing(
                local_engine(probe), developers, args.typing_duration, config.typing_params(),
                max_tokens=out, seed=config.seed, outputs=outputs,
            )[1]
            for probe in both
        ]  # fmt: skip
        share = statistics.mean(p.shown_share for p in predicted)
        p50 = statistics.mean(p.shown_p50 for p in predicted)
        m50 = statistics.median(r["end"] - r["sent"] for r in shown) if shown else float("nan")
        error = p50 / m50 - 1
        errors.append(abs(error))
        rows.append(
            f"{developers:4d} {config.seed:4d} {s.requests:4d} | "
            f"{s.shown / max(s.requests, 1):14.1%} {m50:6.3f} {out:6d} | "
            f"{share:15.1%} {p50:6.3f} | {error:+9.1%}"
        )
    print("\n".join([header, "-" * len(header), *rows]))
    print(f"\nshown p50 error: median {statistics.median(errors):.1%}, max {max(errors):.1%}")


if __name__ == "__main__":
    main()
