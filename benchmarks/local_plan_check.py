"""Does `coderig plan predict --hardware local` predict what `coderig bench` then measures here?

The one end-to-end check of the planner that needs no rented GPU (issue 13, item 4). On this
machine, in one run:

1. `coderig plan probe`: `coderig serve` with its defaults, timed alone with streamed requests
   (a request's overhead, a lone prompt, one and all slots decoding);
2. `coderig serve` with its defaults on the embedded model;
3. per rate, `coderig bench attack` (open loop, distinct generated prompts of the model's own
   tokens, exactly --max-tokens out) against it, and the prediction for the same workload,
   from the probe alone. Nothing measured under load goes into the prediction.

4. per team size, `coderig bench typing` (the `/infill` API, so the gateway's stable windows
   apply) against a fresh `coderig serve`, and `plan predict --workload typing` for the same
   script (same traffic code and seed), the probe, and the completion length measured (the
   gateway's editor rules end suggestions early; that is the model's text, not the hardware).

    python benchmarks/local_plan_check.py --rates 0.25,0.5,0.75 --duration 90 \
        --developers 2,4,8 --typing-duration 60
"""

from __future__ import annotations

import argparse
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
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",") if r]
    model_path = embedded_model_path()

    print(machine_line())
    print(f"date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    probe = run_probe(
        model_path,
        threads=os.cpu_count() or 1,
        slots=4,
        batch_size=512,
        n_ctx=4096,
        say=lambda text: print(f"  probe: {text}", file=sys.stderr),
    )
    print(f"probe: {probe_summary(probe)}")
    print(
        f"workload: {args.arrival} arrivals, {args.duration:g} s per rate, {args.prompt_tokens}"
        f"-token distinct code prompts, {args.max_tokens} tokens out (ignore_eos), streamed\n"
    )
    header = (
        f"{'rate':>5} {'reqs':>4} {'ok':>4} | {'measured p50':>12} {'p90':>6} {'TTFT p50':>8} | "
        f"{'predicted p50':>13} {'p90':>6} {'TTFT p50':>8} | {'p50 error':>9}"
    )
    print(header)
    print("-" * len(header))
    errors = []
    for i, rate in enumerate(rates):
        # A fresh server and other prompts per rate: llama-server's prompt cache (--cache-ram)
        # would otherwise serve a rate's prompts from the previous rate's run.
        server = serve()
        try:
            config = AttackConfig(
                url=f"{server.url}/v1/completions",
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
                    tokenizer=str(model_path),
                    seed=i + 1,
                ),
            )
            head, results = run_attack(config)
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
            p = predict_local(probe, workload).result
            measured = sorted(r["end"] - r["sent"] for r in ok)
            p50 = statistics.median(measured)
            p90 = statistics.quantiles(measured, n=10)[-1] if len(measured) > 1 else p50
            error = p.latency_p50 / p50 - 1
            errors.append(abs(error))
            print(
                f"{rate:5.2f} {m.requests:4d} {len(ok):4d} | {p50:12.3f} {p90:6.3f} "
                f"{m.ttft.p50:8.3f} | {p.latency_p50:13.3f} {p.latency_p90:6.3f} "
                f"{p.ttft_p50:8.3f} | {error:+9.1%}",
                flush=True,
            )
        finally:
            server.stop()
    if errors:
        print(f"\np50 error: median {statistics.median(errors):.1%}, max {max(errors):.1%}")
    teams = [int(d) for d in args.developers.split(",") if d]
    if teams:
        check_typing(probe, teams, args)


def check_typing(probe, teams: list[int], args) -> None:
    from coderig.bench.typing import TypingConfig, run_typing
    from coderig.bench.typing_report import summarize_typing
    from coderig.plan.typing_load import local_engine, predict_typing

    engine = local_engine(probe)
    print(
        f"\ntyping: bench typing --api infill, {args.typing_duration:g} s per team, "
        f"{args.typing_max_tokens} tokens asked per suggestion"
        + (f", params {args.typing_params}" if args.typing_params else "")
    )
    header = (
        f"{'devs':>4} {'reqs':>4} | {'measured shown':>14} {'p50':>6} {'tokens':>6} | "
        f"{'predicted shown':>15} {'p50':>6} | {'p50 error':>9}"
    )
    print(header)
    print("-" * len(header))
    for i, developers in enumerate(teams):
        server = serve()
        try:
            config = TypingConfig(
                url=server.url,
                developers=developers,
                duration=args.typing_duration,
                api="infill",
                max_tokens=args.typing_max_tokens,
                seed=10 + i,
                params_file=args.typing_params,
            )
            header_, results = run_typing(config)
            s = summarize_typing(header_, results)
        finally:
            server.stop()
        shown = [r for r in results if r["outcome"] == "shown"]
        tokens = [r["completion_tokens"] for r in results if r.get("completion_tokens")]
        out = round(statistics.mean(tokens)) if tokens else args.typing_max_tokens
        _, p = predict_typing(
            engine, developers, args.typing_duration, config.typing_params(),
            max_tokens=out, seed=config.seed, window_lines=16,
        )  # fmt: skip
        measured_p50 = statistics.median(r["end"] - r["sent"] for r in shown) if shown else 0.0
        error = p.shown_p50 / measured_p50 - 1 if measured_p50 else float("nan")
        print(
            f"{developers:4d} {s.requests:4d} | {s.shown / max(s.requests, 1):14.1%} "
            f"{measured_p50:6.3f} {out:6d} | {p.shown_share:15.1%} {p.shown_p50:6.3f} | "
            f"{error:+9.1%}",
            flush=True,
        )


if __name__ == "__main__":
    main()
