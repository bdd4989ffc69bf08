"""The planner: from traffic, SLO and catalog to a :class:`~coderig.plan.report.PlanReport`.

Every decision ``coderig plan`` makes lives here (which factors, which options, which one to
recommend, what each option and measured run costs on the plot); the CLI only parses options
and hands the report to a renderer. Errors are ``ValueError``/``KeyError``/``OSError`` so any
front end (CLI, a notebook, a test) can say them its own way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from coderig.on_hours import Schedule
from coderig.plan.calibrate import (
    LooRow,
    Run,
    fit_factors,
    leave_one_out,
    load_calibration,
    validate,
)
from coderig.plan.catalog import Catalog
from coderig.plan.cost import monthly_cost
from coderig.plan.measured import load_measured_runs
from coderig.plan.report import PlanReport, PricePoint, RankedOption, Recommendation
from coderig.plan.roofline import Factors
from coderig.plan.simulate import Workload
from coderig.plan.sizing import Option, size_options
from coderig.plan.traffic import Traffic

__all__ = [
    "Calibrated",
    "calibrated",
    "evidence_note",
    "make_plan",
    "price_points",
    "recommend",
]


@dataclass(frozen=True)
class Calibrated:
    """Factors to predict with, the runs behind them, and the leave-one-out error table."""

    factors: Factors
    runs: list[Run]
    loo: list[LooRow]


def calibrated(
    catalog: Catalog,
    calibrate_files: Sequence[str] = (),
    overrides: Mapping[str, Any] | None = None,
    *,
    with_loo: bool = True,
    refit: bool = False,
) -> Calibrated:
    """The shipped factors, refitted when the user adds bench results (or ``refit``).

    The shipped factors are the fit of the shipped runs, so without results files there is
    nothing to refit unless asked (``coderig plan calibrate`` refits to show it reproduces).
    """
    cal = load_calibration()
    runs = list(cal.runs)
    factors = cal.factors
    if calibrate_files:
        runs += load_measured_runs(list(calibrate_files), overrides or {})
    if calibrate_files or refit:
        factors = fit_factors(catalog, runs, cal.priors, start=cal.factors)
    fitted = [run for run in runs if run.use_for_fit]
    loo = leave_one_out(catalog, runs, cal.priors) if with_loo and len(fitted) > 1 else []
    return Calibrated(factors, runs, loo)


def evidence_note(gpu: str, dtype: str, runs: Iterable[Run]) -> str:
    """Say when a row's prediction rests on no measured run of that GPU (or of that dtype on
    it): the factors were fitted elsewhere, so the roofline carries the prediction alone."""
    dtypes = {run.dtype for run in runs if run.gpu == gpu}
    if not dtypes:
        return "extrapolated: no measured run on this GPU"
    if dtype not in dtypes:
        return f"extrapolated: no measured {dtype} run on this GPU"
    return ""


def recommend(
    options: Sequence[Option], schedule: Schedule, developers: int | None, seat_price: float
) -> Recommendation | None:
    """The first feasible option (options come ranked by the bill), or None."""
    best = next((o for o in options if o.feasible), None)
    if best is None or best.cost is None or best.result is None:
        return None
    scheduled = not schedule.is_always_on
    return Recommendation(
        option=best,
        monthly=best.cost.monthly(scheduled),
        scheduled=scheduled,
        schedule=schedule.describe(),
        developers=developers,
        seat_price=seat_price,
    )


def option_label(option: Option) -> str:
    """How the plot names a configuration: ``2x h100-sxm bf16`` (``tp2`` when TP > 1)."""
    tp = f" tp{option.tensor_parallel}" if option.tensor_parallel > 1 else ""
    return f"{option.replicas}x {option.gpu} {option.dtype}{tp}"


def price_points(
    catalog: Catalog,
    options: Sequence[Option],
    runs: Iterable[Run],
    measured_ids: Iterable[str],
    hours_per_month: float,
) -> list[PricePoint]:
    """Plot points: each feasible option at the peak rate, and each published or user-measured
    run at the load it was measured at, priced always-on like the options."""
    points = [
        PricePoint(
            option_label(o),
            o.gpu,
            o.dtype,
            o.cost.monthly_always_on,
            o.result.latency_p50,
            o.result.latency_p99,
        )
        for o in options
        if o.feasible and o.cost and o.result
    ]
    measured = set(measured_ids)
    for run in runs:
        if run.id not in measured and not run.source.startswith("published"):
            continue
        if "latency_p50" not in run.measured or run.gpu not in catalog.gpus:
            continue
        dollars = monthly_cost(
            catalog.gpu(run.gpu),
            run.replicas * run.tensor_parallel,
            schedule=Schedule.always(),
            cold_start_s=0,
            hours_per_month=hours_per_month,
        ).monthly_always_on
        p50 = run.measured["latency_p50"]
        points.append(
            PricePoint(
                f"measured {run.replicas}x {run.gpu} {run.model} @{run.rate:g}/s",
                run.gpu,
                run.dtype,
                dollars,
                p50,
                run.measured.get("latency_p99", p50),
                kind="measured",
            )
        )
    return points


def make_plan(
    catalog: Catalog,
    calibration: Calibrated,
    *,
    traffic: Traffic,
    model: str,
    gpus: Sequence[str],
    dtypes: Sequence[str],
    workload: Workload,
    slo_p99: float,
    schedule: Schedule,
    hours_per_month: float = 720.0,
    seat_price: float = 39.0,
    max_replicas: int = 64,
    router: str = "least-loaded",
    calibrate_files: Sequence[str] = (),
) -> PlanReport:
    """Size every (GPU, dtype) for ``workload`` at the traffic's peak rate and rank them.

    ``workload.rate`` is replaced by the peak rate; ids are checked against the catalog
    (``KeyError`` names the unknown one).
    """
    model_spec = catalog.model(model)
    for gpu_id in gpus:
        catalog.gpu(gpu_id)
    for dtype_id in dtypes:
        catalog.dtype(dtype_id)
    workload = replace(workload, rate=float(traffic.peak_rate))
    options = size_options(
        catalog,
        calibration.factors,
        model=model_spec.id,
        gpus=gpus,
        dtypes=dtypes,
        workload=workload,
        slo_p99=slo_p99,
        schedule=schedule,
        hours_per_month=hours_per_month,
        developers=traffic.developers,
        seat_price=seat_price,
        max_replicas=max_replicas,
        router=router,
    )
    runs = calibration.runs
    return PlanReport(
        traffic=traffic,
        slo_p99=slo_p99,
        model=model_spec.id,
        workload=workload,
        schedule=schedule.describe(),
        always_on=schedule.is_always_on,
        factors=calibration.factors,
        options=[RankedOption(o, evidence_note(o.gpu, o.dtype, runs)) for o in options],
        recommendation=recommend(options, schedule, traffic.developers, seat_price),
        calibration_loo=calibration.loo,
        calibration_validation=validate(catalog, calibration.factors, runs),
        points=price_points(
            catalog, options, runs, [Path(p).name for p in calibrate_files], hours_per_month
        ),
        seat_price=seat_price,
        catalog_files=tuple(catalog.files),
    )
