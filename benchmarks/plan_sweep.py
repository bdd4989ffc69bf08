"""Time the planner's full catalog sweep and print its calibration error.

    PYTHONPATH=. python benchmarks/plan_sweep.py   # from the repository root

Prints: wall time of one `coderig plan --developers 100 --slo-p99 1.5s` sweep (12 GPUs x 3
dtypes, replica search by simulation), simulator steps per second, the leave-one-run-out table,
and predictions for a few GPU/model points outside the calibration set.
"""

from __future__ import annotations

import time

from coderig.on_hours import Schedule
from coderig.plan.calibrate import leave_one_out, load_calibration
from coderig.plan.catalog import load_catalog
from coderig.plan.predict import Deployment, predict
from coderig.plan.simulate import Workload
from coderig.plan.sizing import size_options


def main() -> None:
    catalog = load_catalog()
    cal = load_calibration()
    start = time.perf_counter()
    options = size_options(
        catalog,
        cal.factors,
        model="qwen2.5-coder-7b",
        gpus=list(catalog.gpus),
        dtypes=["bf16", "fp8", "int4"],
        workload=Workload(rate=35, duration=60, arrival="poisson"),
        slo_p99=1.5,
        schedule=Schedule.from_hours_days("9-18", "mon-fri"),
        developers=100,
    )
    sweep = time.perf_counter() - start
    print(f"sweep: {len(options)} options in {sweep:.1f} s")

    dep = Deployment("h100-sxm", "qwen2.5-coder-7b")
    start = time.perf_counter()
    result = predict(catalog, cal.factors, dep, Workload(rate=35, duration=600)).result
    elapsed = time.perf_counter() - start
    print(
        f"simulator: 600 s at 35 req/s on one H100 ({result.requests} requests) in "
        f"{elapsed * 1e3:.0f} ms"
    )

    print("\nleave-one-run-out:")
    print(f"{'run':15s} {'metric':12s} {'measured':>9s} {'predicted':>9s} {'error':>7s}")
    for row in leave_one_out(catalog, cal.runs, cal.priors):
        print(
            f"{row.run:15s} {row.metric:12s} {row.measured:9.3f} {row.predicted:9.3f} "
            f"{row.error_pct:+6.1f}%"
        )

    print("\nout-of-sample predictions (700 in / 128 out, 5 s constant):")
    points = [
        ("a100-80gb", "qwen2.5-coder-7b", 1),
        ("l40s", "qwen2.5-coder-7b", 1),
        ("h100-sxm", "qwen2.5-coder-32b", 1),
        ("h100-sxm", "qwen2.5-coder-32b", 8),
        ("l40s", "qwen2.5-coder-1.5b", 16),
        ("h200", "qwen2.5-coder-14b", 16),
    ]
    for gpu, model, rate in points:
        r = predict(catalog, cal.factors, Deployment(gpu, model), Workload(rate=rate, duration=5))
        print(
            f"  {gpu:10s} {model:20s} {rate:3d} req/s  p50 {r.result.latency_p50:.3f} s  "
            f"p99 {r.result.latency_p99:.3f} s  TTFT p50 {r.result.ttft_p50:.3f} s"
        )


if __name__ == "__main__":
    main()
