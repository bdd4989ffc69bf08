"""``coderig plan``: size the hardware before you buy it."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from coderig.console import make_console
from coderig.on_hours import Schedule
from coderig.plan.calibrate import (
    LooRow,
    Run,
    fit_factors,
    leave_one_out,
    load_calibration,
    predict_run,
    validate,
)
from coderig.plan.catalog import Catalog, load_catalog
from coderig.plan.cost import monthly_cost
from coderig.plan.measured import load_measured_runs
from coderig.plan.memory import TP_DEGREES, fit, smallest_tp
from coderig.plan.predict import Deployment, predict
from coderig.plan.roofline import Factors
from coderig.plan.simulate import Workload
from coderig.plan.sizing import Option, size_options
from coderig.plan.traffic import traffic_for
from coderig.units import parse_duration

DEFAULT_MODEL = "qwen2.5-coder-7b"


def _csv(value: str | None) -> list[str]:
    return [item.strip().lower() for item in (value or "").split(",") if item.strip()]


PREFIX_CACHE_HELP = (
    "Fraction of each prompt vLLM serves from its prefix cache instead of prefilling it "
    "(0-1, rounded down to whole KV blocks). 0 (default) plans for distinct prompts, the "
    "conservative case; completions of one developer share most of their prompt with the "
    "previous one, so a prefix-aware router can reach far more."
)


def _fraction(_ctx, _param, value):
    if value is not None and not 0.0 <= value <= 1.0:
        raise click.BadParameter("must be between 0 and 1")
    return value


def _duration(_ctx, _param, value):
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _load(catalog_files: tuple[str, ...]) -> Catalog:
    try:
        return load_catalog(catalog_files)
    except (OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None


def _calibration(
    catalog: Catalog, calibrate_files: tuple[str, ...], overrides: dict, *, with_loo: bool = True
) -> tuple[Factors, list[Run], list[LooRow]]:
    """Factors to predict with, the runs behind them, and the leave-one-out error table."""
    cal = load_calibration()
    runs = list(cal.runs)
    factors = cal.factors
    if calibrate_files:
        try:
            runs += load_measured_runs(list(calibrate_files), overrides)
        except (OSError, ValueError) as exc:
            raise click.ClickException(str(exc)) from None
        factors = fit_factors(catalog, runs, cal.priors, start=cal.factors)
    fitted = [run for run in runs if run.use_for_fit]
    loo = leave_one_out(catalog, runs, cal.priors) if with_loo and len(fitted) > 1 else []
    return factors, runs, loo


def _loo_table(rows: list[LooRow], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("run", "metric", "measured s", "predicted s", "error"):
        left = column.startswith(("run", "metric"))
        table.add_column(column, justify="left" if left else "right")
    for row in rows:
        table.add_row(
            row.run,
            row.metric,
            f"{row.measured:.3f}",
            f"{row.predicted:.3f}",
            f"{row.error_pct:+.1f}%",
        )
    return table


def _loo_summary(rows: list[LooRow]) -> str:
    if not rows:
        return "calibration error: no held-out measurements (need 2+ runs)"
    errors = [abs(r.error_pct) for r in rows]
    return (
        f"calibration error (leave-one-run-out over {len(rows)} measurements): "
        f"mean |error| {sum(errors) / len(errors):.1f}%, max {max(errors):.1f}%"
    )


def _schedule(hours: str | None, days: str | None, schedule_text: str | None) -> Schedule:
    try:
        if schedule_text and schedule_text.strip().lower() in ("always", "24/7", "none"):
            return Schedule.always()
        if schedule_text:
            return Schedule.parse(schedule_text)
        if hours or days:
            return Schedule.from_hours_days(hours or "0-24", days or "daily")
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return Schedule.always()


def _fmt_money(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"${value:,.0f}"


@click.group(invoke_without_command=True)
@click.option("--developers", type=int, help="Team size.")
@click.option(
    "--seconds-between-requests",
    type=float,
    default=5.0,
    show_default=True,
    help="Average seconds between two completion requests of one developer.",
)
@click.option("--rate", type=float, help="Average requests/s (instead of --developers).")
@click.option(
    "--percentile",
    type=float,
    default=99.9,
    show_default=True,
    help="Size for this percentile of the per-second Poisson request count.",
)
@click.option(
    "--slo-p99",
    "slo",
    default="1.5s",
    show_default=True,
    callback=_duration,
    help="Target p99 full-response latency at the peak rate.",
)
@click.option("--model", default=DEFAULT_MODEL, show_default=True, help="Model id.")
@click.option("--gpus", help="Comma list of GPU ids to consider (default: all in catalog).")
@click.option(
    "--dtypes",
    default="bf16,fp8,int4",
    show_default=True,
    help="Comma list of weight dtypes to consider.",
)
@click.option("--prompt-tokens", type=int, default=700, show_default=True)
@click.option("--output-tokens", type=int, default=128, show_default=True)
@click.option(
    "--prefix-cache-hit",
    type=float,
    default=0.0,
    show_default=True,
    callback=_fraction,
    help=PREFIX_CACHE_HELP,
)
@click.option(
    "--duration",
    default="60s",
    show_default=True,
    callback=_duration,
    help="Length of the simulated peak (latency grows with it above capacity).",
)
@click.option(
    "--arrival", type=click.Choice(["poisson", "constant"]), default="poisson", show_default=True
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--hours", default="9-18", show_default=True, help="Working hours for the scale-to-zero price."
)
@click.option(
    "--days", default="mon-fri", show_default=True, help="Working days for the scale-to-zero price."
)
@click.option(
    "--schedule",
    "schedule_text",
    help="Scale-to-zero schedule in serve's syntax instead of --hours/--days, e.g. "
    "'mon-fri 08:00-19:00'; 'always' prices always-on only.",
)
@click.option("--hours-per-month", type=float, default=720.0, show_default=True)
@click.option(
    "--seat-price",
    type=float,
    default=39.0,
    show_default=True,
    help="Per-seat SaaS price per month, to compare with.",
)
@click.option("--max-replicas", type=int, default=64, show_default=True)
@click.option(
    "--router",
    type=click.Choice(["least-loaded", "round-robin"]),
    default="least-loaded",
    show_default=True,
)
@click.option(
    "--plot-dir",
    default="coderig-plan",
    show_default=True,
    help="Where to write price-performance.png/.html.",
)
@click.option("--no-plot", is_flag=True, help="Do not write the plot.")
@click.option("--catalog", "catalog_files", multiple=True, help="Extra catalog TOML file(s).")
@click.option(
    "--calibrate",
    "calibrate_files",
    multiple=True,
    help="coderig bench results file(s) to calibrate on (and to plot).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def plan(ctx: click.Context, **opts) -> None:
    """From team size and a latency target: peak load, GPUs, replicas, monthly cost."""
    if ctx.invoked_subcommand is not None:
        return
    _plan(**opts)


def _plan(
    *,
    developers,
    seconds_between_requests,
    rate,
    percentile,
    slo,
    model,
    gpus,
    dtypes,
    prompt_tokens,
    output_tokens,
    prefix_cache_hit,
    duration,
    arrival,
    seed,
    hours,
    days,
    schedule_text,
    hours_per_month,
    seat_price,
    max_replicas,
    router,
    plot_dir,
    no_plot,
    catalog_files,
    calibrate_files,
    as_json,
) -> None:
    console = make_console(stderr=as_json)
    try:
        traffic = traffic_for(
            developers=developers,
            seconds_between_requests=seconds_between_requests,
            rate=rate,
            percentile=percentile,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    catalog = _load(catalog_files)
    try:
        model_spec = catalog.model(model)
        gpu_ids = _csv(gpus) or list(catalog.gpus)
        for gpu_id in gpu_ids:
            catalog.gpu(gpu_id)
        dtype_ids = _csv(dtypes)
        for dtype_id in dtype_ids:
            catalog.dtype(dtype_id)
    except KeyError as exc:
        raise click.BadParameter(exc.args[0]) from None
    schedule = _schedule(hours, days, schedule_text)
    factors, runs, loo = _calibration(catalog, calibrate_files, {"model": model_spec.id})
    workload = Workload(
        rate=float(traffic.peak_rate),
        duration=duration,
        prompt_tokens=prompt_tokens,
        output_tokens=output_tokens,
        arrival=arrival,
        seed=seed,
        prefix_cache_hit=prefix_cache_hit,
    )
    options = size_options(
        catalog,
        factors,
        model=model_spec.id,
        gpus=gpu_ids,
        dtypes=dtype_ids,
        workload=workload,
        slo_p99=slo,
        schedule=schedule,
        hours_per_month=hours_per_month,
        developers=developers,
        seat_price=seat_price,
        max_replicas=max_replicas,
        router=router,
    )
    feasible = [o for o in options if o.feasible]
    best = feasible[0] if feasible else None
    recommendation = _recommend(best, traffic, slo, schedule, developers, seat_price)
    plot_paths: tuple[Path, Path] | None = None
    if not no_plot:
        plot_paths = _write_plot(
            catalog,
            feasible,
            runs,
            calibrate_files,
            plot_dir,
            slo,
            hours_per_month,
            model_spec.id,
            traffic.peak_rate,
        )
    if as_json:
        out = {
            "traffic": traffic.to_dict(),
            "slo_p99": slo,
            "model": model_spec.id,
            "workload": {
                "prompt_tokens": prompt_tokens,
                "output_tokens": output_tokens,
                "prefix_cache_hit": prefix_cache_hit,
                "duration": duration,
                "arrival": arrival,
                "rate": traffic.peak_rate,
            },
            "schedule": schedule.describe(),
            "factors": factors.to_dict(),
            "options": [
                {**o.to_dict(), "note": evidence_note(o.gpu, o.dtype, runs)} for o in options
            ],
            "recommendation": recommendation,
            "calibration_loo": [r.to_dict() for r in loo],
            "calibration_summary": _loo_summary(loo),
            "calibration_validation": [r.to_dict() for r in validate(catalog, factors, runs)],
            "plot": [str(p) for p in plot_paths] if plot_paths else None,
            "catalog_files": list(catalog.files),
        }
        click.echo(json.dumps(out, indent=2, default=_json_default))
        return
    console.print(
        f"[bold]Traffic[/bold]: average {traffic.average_rate:g} req/s"
        + (
            f" ({developers} developers, one request every {seconds_between_requests:g} s)"
            if developers
            else ""
        )
    )
    console.print(
        f"  peak at p{percentile:g} of the Poisson per-second count: "
        f"[bold]{traffic.peak_rate} req/s[/bold] (exact; used)   "
        f"normal approximation λ+3√λ: {traffic.normal_peak_rate:.1f} req/s"
    )
    console.print(
        f"  simulated: {traffic.peak_rate} req/s {arrival} for {duration:g} s, "
        f"{prompt_tokens}-token prompts ({prefix_cache_hit:.0%} from the prefix cache), "
        f"{output_tokens} output tokens; SLO p99 ≤ {slo:g} s; "
        f"schedule: {schedule.describe()}"
    )
    console.print(_options_table(options, schedule, developers, model_spec.id, runs))
    console.print(f"[bold green]{escape(recommendation)}[/bold green]")
    console.print(_loo_table(loo, "Calibration: leave-one-run-out error"))
    console.print(_loo_summary(loo))
    if plot_paths:
        console.print(f"price/performance plot: {plot_paths[0]} and {plot_paths[1]}")


def _json_default(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    raise TypeError(f"not JSON serialisable: {value!r}")


def evidence_note(gpu: str, dtype: str, runs: list[Run]) -> str:
    """Say when a row's prediction rests on no measured run of that GPU (or of that dtype on
    it): the factors were fitted elsewhere, so the roofline carries the prediction alone."""
    dtypes = {run.dtype for run in runs if run.gpu == gpu}
    if not dtypes:
        return "extrapolated: no measured run on this GPU"
    if dtype not in dtypes:
        return f"extrapolated: no measured {dtype} run on this GPU"
    return ""


def _options_table(
    options: list[Option],
    schedule: Schedule,
    developers: int | None,
    model: str,
    runs: list[Run],
) -> Table:
    scheduled = not schedule.is_always_on
    table = Table(title=f"Hardware for {model}, ranked by monthly cost", title_justify="left")
    columns = ["#", "GPU", "dtype", "TP", "replicas", "p50 s", "p99 s", "$/month 24x7"]
    if scheduled:
        columns.append("$/month sched.")
    columns += ["$/dev", "= seats", "note"]
    for column in columns:
        table.add_column(
            column, justify="right" if column not in ("GPU", "dtype", "note") else "left"
        )
    for rank, option in enumerate(options, 1):
        cost, result = option.cost, option.result
        if option.feasible and cost and result:
            per_dev = cost.per_developer_scheduled if scheduled else cost.per_developer
            seats = cost.equivalent_seats_scheduled if scheduled else cost.equivalent_seats
            row = [
                str(rank),
                option.gpu,
                option.dtype,
                str(option.tensor_parallel),
                str(option.replicas),
                f"{result.latency_p50:.2f}",
                f"{result.latency_p99:.2f}",
                _fmt_money(cost.monthly_always_on),
            ]
            if scheduled:
                row.append(_fmt_money(cost.monthly_scheduled))
            note = evidence_note(option.gpu, option.dtype, runs)
            row += [_fmt_money(per_dev) if developers else "-", f"{seats:.0f}", note]
        else:
            row = [
                "-",
                option.gpu,
                option.dtype,
                str(option.tensor_parallel) if option.tensor_parallel else "-",
                "-",
                "-",
                "-",
                "-",
            ]
            if scheduled:
                row.append("-")
            row += ["-", "-", option.reason]
        table.add_row(*row, style=None if option.feasible else "dim")
    return table


def _recommend(best: Option | None, traffic, slo, schedule: Schedule, developers, seat_price):
    if best is None or best.cost is None or best.result is None:
        return (
            f"No catalog configuration meets p99 ≤ {slo:g}s at {traffic.peak_rate} req/s; "
            "relax the SLO, shorten outputs, or add GPUs to the catalog."
        )
    cost = best.cost
    scheduled = not schedule.is_always_on
    dollars = cost.monthly_scheduled if scheduled else cost.monthly_always_on
    when = f" on '{schedule.describe()}' with scale-to-zero" if scheduled else " always on"
    text = (
        f"Recommendation: {best.replicas}x {best.gpu} ({best.dtype}"
        f"{', TP=' + str(best.tensor_parallel) if best.tensor_parallel > 1 else ''}) — "
        f"p99 {best.result.latency_p99:.2f}s at {traffic.peak_rate} req/s, "
        f"${dollars:,.0f}/month{when}"
    )
    if developers:
        saas = developers * seat_price
        verdict = "cheaper" if dollars < saas else "dearer"
        text += (
            f", ${dollars / developers:,.2f}/developer; {verdict} than {developers} seats "
            f"at ${seat_price:g} (${saas:,.0f}/month)"
        )
    if best.dtype != "bf16":
        text += f" [{best.dtype} is quantised: check completion quality]"
    return text + "."


def _write_plot(
    catalog, feasible, runs, calibrate_files, plot_dir, slo, hours_per_month, model, peak_rate
):
    from coderig.plan.plot import Point, write_plot

    points = [
        Point(
            f"{o.replicas}x {o.gpu} {o.dtype}"
            + (f" tp{o.tensor_parallel}" if o.tensor_parallel > 1 else ""),
            o.cost.monthly_always_on,
            o.result.latency_p50,
            o.result.latency_p99,
        )
        for o in feasible
        if o.cost and o.result
    ]
    measured_ids = {Path(p).name for p in calibrate_files}
    for run in runs:
        if run.id not in measured_ids and not run.source.startswith("published"):
            continue
        if "latency_p50" not in run.measured or run.gpu not in catalog.gpus:
            continue
        gpu = catalog.gpu(run.gpu)
        dollars = monthly_cost(
            gpu,
            run.replicas * run.tensor_parallel,
            schedule=Schedule.always(),
            cold_start_s=0,
            hours_per_month=hours_per_month,
        ).monthly_always_on
        p50 = run.measured["latency_p50"]
        p99 = run.measured.get("latency_p99", p50)
        points.append(
            Point(
                f"measured {run.replicas}x {run.gpu} {run.model} @{run.rate:g}/s",
                dollars,
                p50,
                p99,
                kind="measured",
            )
        )
    return write_plot(
        points, plot_dir, slo=slo, title=f"{model}: latency at {peak_rate} req/s vs monthly cost"
    )


# ---------------------------------------------------------------------------------------------
@plan.command("predict")
@click.option("--gpu", required=True, help="GPU id, e.g. h100-sxm.")
@click.option("--model", default=DEFAULT_MODEL, show_default=True)
@click.option("--dtype", default="bf16", show_default=True)
@click.option(
    "--tensor-parallel",
    type=int,
    default=None,
    help="GPUs per replica (default: the smallest that fits).",
)
@click.option("--replicas", type=int, default=1, show_default=True)
@click.option("--rate", type=float, required=True, help="Requests per second.")
@click.option("--duration", default="5s", show_default=True, callback=_duration)
@click.option(
    "--arrival", type=click.Choice(["constant", "poisson"]), default="constant", show_default=True
)
@click.option("--prompt-tokens", type=int, default=700, show_default=True)
@click.option("--output-tokens", type=int, default=128, show_default=True)
@click.option(
    "--prefix-cache-hit",
    type=float,
    default=0.0,
    show_default=True,
    callback=_fraction,
    help=PREFIX_CACHE_HELP,
)
@click.option(
    "--identical-prompts",
    is_flag=True,
    help="Every request sends the same body (vegeta -body, ab -p): only the first one "
    "prefills, the rest hit the prefix cache. Use it to compare with such load tests.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--router",
    type=click.Choice(["least-loaded", "round-robin"]),
    default="least-loaded",
    show_default=True,
)
@click.option("--catalog", "catalog_files", multiple=True)
@click.option("--calibrate", "calibrate_files", multiple=True)
@click.option("--json", "as_json", is_flag=True)
def predict_cmd(
    gpu,
    model,
    dtype,
    tensor_parallel,
    replicas,
    rate,
    duration,
    arrival,
    prompt_tokens,
    output_tokens,
    prefix_cache_hit,
    identical_prompts,
    seed,
    router,
    catalog_files,
    calibrate_files,
    as_json,
):
    """Predict p50/p90/p99 latency and TTFT for one configuration under one load."""
    catalog = _load(catalog_files)
    try:
        gpu_spec = catalog.gpu(gpu)
        model_spec = catalog.model(model)
        dtype_spec = catalog.dtype(dtype)
    except KeyError as exc:
        raise click.BadParameter(exc.args[0]) from None
    if tensor_parallel is None:
        smallest = smallest_tp(gpu_spec, model_spec, dtype_spec, catalog)
        if smallest is None:
            raise click.ClickException(f"{model_spec.id} ({dtype}) does not fit on 8x {gpu}")
        tensor_parallel = smallest.tensor_parallel
    factors, _, _ = _calibration(
        catalog, calibrate_files, {"gpu": gpu_spec.id, "model": model_spec.id}, with_loo=False
    )
    deployment = Deployment(gpu_spec.id, model_spec.id, dtype_spec.id, tensor_parallel, replicas)
    workload = Workload(
        rate=rate,
        duration=duration,
        prompt_tokens=prompt_tokens,
        output_tokens=output_tokens,
        arrival=arrival,
        seed=seed,
        prefix_cache_hit=prefix_cache_hit,
        identical_prompts=identical_prompts,
    )
    try:
        prediction = predict(catalog, factors, deployment, workload, router=router)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    data = prediction.to_dict()
    data["factors"] = factors.to_dict()
    if as_json:
        click.echo(json.dumps(data, indent=2, default=_json_default))
        return
    r = prediction.result
    console = make_console()
    console.print(
        f"{replicas}x {gpu_spec.id} ({dtype_spec.id}, TP={tensor_parallel}) serving "
        f"{model_spec.id}: {rate:g} req/s {arrival} for {duration:g} s, "
        f"{prompt_tokens} in / {output_tokens} out"
        + (
            ", one body repeated (prefix cache)"
            if identical_prompts
            else f", {prefix_cache_hit:.0%} of each prompt from the prefix cache"
            if prefix_cache_hit
            else ""
        )
    )
    table = Table()
    for column in ("", "p50 s", "p90 s", "p99 s"):
        table.add_column(column, justify="right")
    table.add_row("latency", f"{r.latency_p50:.3f}", f"{r.latency_p90:.3f}", f"{r.latency_p99:.3f}")
    table.add_row("TTFT", f"{r.ttft_p50:.3f}", f"{r.ttft_p90:.3f}", f"{r.ttft_p99:.3f}")
    console.print(table)
    console.print(
        f"requests {r.requests}, mean running batch {r.mean_batch:.1f}, max waiting "
        f"{r.max_waiting}, API-server load {r.frontend_utilization:.0%}"
    )


# ---------------------------------------------------------------------------------------------
@plan.command("fit")
@click.option("--model", default=DEFAULT_MODEL, show_default=True)
@click.option("--gpus", help="Comma list of GPU ids (default: all).")
@click.option("--dtypes", default="bf16,fp8,int4", show_default=True)
@click.option(
    "--max-model-len",
    type=int,
    default=None,
    help="Context per sequence (default from engine.toml: 4096).",
)
@click.option(
    "--gpu-memory-utilization",
    type=float,
    default=None,
    help="Fraction of GPU memory vLLM may use (default 0.9).",
)
@click.option("--catalog", "catalog_files", multiple=True)
@click.option("--json", "as_json", is_flag=True)
def fit_cmd(model, gpus, dtypes, max_model_len, gpu_memory_utilization, catalog_files, as_json):
    """Will it fit: largest batch per GPU at max-model-len, and the smallest TP that holds it."""
    catalog = _load(catalog_files)
    try:
        model_spec = catalog.model(model)
        gpu_specs = [catalog.gpu(g) for g in (_csv(gpus) or list(catalog.gpus))]
        dtype_specs = [catalog.dtype(d) for d in _csv(dtypes)]
    except KeyError as exc:
        raise click.BadParameter(exc.args[0]) from None
    rows = []
    for gpu_spec in gpu_specs:
        for dtype_spec in dtype_specs:
            single = fit(
                gpu_spec,
                model_spec,
                dtype_spec,
                catalog,
                tensor_parallel=1,
                max_model_len=max_model_len,
                gpu_memory_utilization=gpu_memory_utilization,
            )
            smallest = smallest_tp(
                gpu_spec,
                model_spec,
                dtype_spec,
                catalog,
                max_model_len=max_model_len,
                gpu_memory_utilization=gpu_memory_utilization,
            )
            rows.append((single, smallest))
    if as_json:
        click.echo(
            json.dumps(
                {
                    "model": model_spec.id,
                    "params": model_spec.params,
                    "kv_bytes_per_token": model_spec.kv_bytes_per_token(
                        catalog.kv_bytes_per_element
                    ),
                    "weight_bytes": {d.id: model_spec.weight_bytes(d) for d in dtype_specs},
                    "fits": [
                        {"tp1": s.to_dict(), "smallest_tp": m.to_dict() if m else None}
                        for s, m in rows
                    ],
                },
                indent=2,
            )
        )
        return
    console = make_console()
    console.print(
        f"{model_spec.id}: {model_spec.params / 1e9:.2f} B parameters, KV cache "
        f"{model_spec.kv_bytes_per_token(catalog.kv_bytes_per_element) / 1024:.0f} KiB/token; "
        + ", ".join(
            f"{d.id} weights {model_spec.weight_bytes(d) / 1e9:.1f} GB" for d in dtype_specs
        )
    )
    table = Table(
        title=f"Will it fit (max-model-len {rows[0][0].max_model_len if rows else '-'})",
        title_justify="left",
    )
    for column in (
        "GPU",
        "dtype",
        "weights GiB",
        "KV GiB",
        "max batch @1 GPU",
        "smallest TP",
        "max batch @TP",
        "note",
    ):
        table.add_column(column, justify="left" if column in ("GPU", "dtype", "note") else "right")
    for single, smallest in rows:
        table.add_row(
            single.gpu,
            single.dtype,
            f"{single.weights_gib_per_gpu:.1f}",
            f"{single.kv_gib_per_gpu:.1f}",
            str(single.max_batch) if single.fits else "0",
            str(smallest.tensor_parallel) if smallest else "-",
            str(smallest.max_batch) if smallest else "-",
            "" if single.fits else (single.reason if smallest else f"> 8 GPUs: {single.reason}"),
        )
    console.print(table)
    console.print(f"TP degrees tried: {', '.join(map(str, TP_DEGREES))}")


# ---------------------------------------------------------------------------------------------
@plan.command("calibrate")
@click.argument("results", nargs=-1)
@click.option("--gpu", help="GPU id for results files without a gpu tag.")
@click.option("--model", help="Model id for results files without a model tag.")
@click.option("--dtype", help="dtype for results files without a dtype tag.")
@click.option("--replicas", type=int, help="Replica count for files without a replicas tag.")
@click.option(
    "--prefix-cache-hit",
    type=float,
    default=None,
    callback=_fraction,
    help="Prefix-cache hit fraction for results files without a prefix_cache_hit tag "
    "(default 0: distinct prompts).",
)
@click.option(
    "--identical-prompts/--distinct-prompts",
    default=None,
    help="Whether the results files repeated one request body (default: from the file: "
    "a 'body' workload is one body repeated).",
)
@click.option("--catalog", "catalog_files", multiple=True)
@click.option("--json", "as_json", is_flag=True)
def calibrate_cmd(
    results,
    gpu,
    model,
    dtype,
    replicas,
    prefix_cache_hit,
    identical_prompts,
    catalog_files,
    as_json,
):
    """Fit the latency model's factors and print its leave-one-out error per measurement.

    RESULTS are optional coderig bench results files, added to the shipped published runs.
    Published validation runs (other GPUs and model sizes, never fitted on) are predicted
    with the fitted factors and shown as out-of-sample error.
    """
    catalog = _load(catalog_files)
    overrides = {
        "gpu": gpu,
        "model": model,
        "dtype": dtype,
        "replicas": replicas,
        "prefix_cache_hit": prefix_cache_hit,
        "identical_prompts": identical_prompts,
    }
    factors, runs, loo = _calibration(catalog, tuple(results), overrides)
    if not results:
        cal = load_calibration()
        factors = fit_factors(catalog, runs, cal.priors, start=cal.factors)
    fitted = [run for run in runs if run.use_for_fit]
    in_sample = [(run, predict_run(catalog, factors, run)) for run in fitted]
    validation = validate(catalog, factors, runs)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "factors": factors.to_dict(),
                    "runs": [r.to_dict() for r in runs],
                    "in_sample": [{"run": r.id, **p} for r, p in in_sample],
                    "leave_one_out": [row.to_dict() for row in loo],
                    "summary": _loo_summary(loo),
                    "validation": [row.to_dict() for row in validation],
                    "validation_summary": _validation_summary(validation),
                },
                indent=2,
                default=_json_default,
            )
        )
        return
    console = make_console()
    table = Table(title="Fitted factors (all fit runs)", title_justify="left")
    table.add_column("factor")
    table.add_column("value", justify="right")
    for name, value in factors.to_dict().items():
        table.add_row(name, f"{value:.4g}")
    console.print(table)
    console.print(_loo_table(loo, "Leave-one-run-out: each run predicted by a fit on the others"))
    console.print(_loo_summary(loo))
    for run, predicted in in_sample:
        console.print(
            f"  in-sample {run.id}: "
            + ", ".join(f"{m} {run.measured[m]:.3f} → {predicted[m]:.3f}" for m in run.measured)
        )
    if validation:
        console.print(
            _loo_table(validation, "Validation (never fitted on): other GPUs, model sizes, dtypes")
        )
        console.print(_validation_summary(validation))


def _validation_summary(rows: list[LooRow]) -> str:
    if not rows:
        return "validation: no validation runs"
    errors = [abs(r.error_pct) for r in rows]
    return (
        f"validation error (out of sample, {len(rows)} measurements): "
        f"mean |error| {sum(errors) / len(errors):.1f}%, max {max(errors):.1f}%"
    )


# ---------------------------------------------------------------------------------------------
@plan.command("catalog")
@click.option("--catalog", "catalog_files", multiple=True)
@click.option("--json", "as_json", is_flag=True)
def catalog_cmd(catalog_files, as_json):
    """List GPUs and models (shipped, merged with your catalog files)."""
    catalog = _load(catalog_files)
    if as_json:
        from dataclasses import asdict

        click.echo(
            json.dumps(
                {
                    "files": list(catalog.files),
                    "gpus": {k: asdict(v) for k, v in catalog.gpus.items()},
                    "models": {
                        k: {
                            **asdict(v),
                            "params": v.params,
                            "kv_bytes_per_token": v.kv_bytes_per_token(
                                catalog.kv_bytes_per_element
                            ),
                        }
                        for k, v in catalog.models.items()
                    },
                    "dtypes": {k: asdict(v) for k, v in catalog.dtypes.items()},
                },
                indent=2,
            )
        )
        return
    console = make_console()
    gpus = Table(title="GPUs", title_justify="left")
    for column in ("id", "memory GiB", "GB/s", "bf16 TFLOPS", "fp8 TFLOPS", "$/hour", "source"):
        gpus.add_column(
            column, justify="right" if column not in ("id", "source") else "left", overflow="fold"
        )
    for g in catalog.gpus.values():
        gpus.add_row(
            g.id,
            f"{g.memory_gib:g}",
            f"{g.bandwidth_gbps:g}",
            f"{g.bf16_tflops:g}",
            f"{g.fp8_tflops:g}" if g.fp8_tflops else "-",
            f"{g.price_per_hour:.2f}",
            g.source,
        )
    console.print(gpus)
    models = Table(title="Models", title_justify="left")
    for column in (
        "id",
        "params B",
        "layers",
        "hidden",
        "heads/kv",
        "KiB KV/token",
        "bf16 GB",
        "fp8 GB",
        "int4 GB",
    ):
        models.add_column(column, justify="right" if column != "id" else "left")
    dt = catalog.dtypes
    for m in catalog.models.values():
        models.add_row(
            m.id,
            f"{m.params / 1e9:.2f}",
            str(m.layers),
            str(m.hidden_size),
            f"{m.attention_heads}/{m.kv_heads}",
            f"{m.kv_bytes_per_token(catalog.kv_bytes_per_element) / 1024:.0f}",
            *(
                f"{m.weight_bytes(dt[d]) / 1e9:.1f}" if d in dt else "-"
                for d in ("bf16", "fp8", "int4")
            ),
        )
    console.print(models)
    console.print("catalog files: " + "; ".join(catalog.files))


def main() -> None:  # pragma: no cover - convenience for python -m coderig.plan.cli
    plan(sys.argv[1:])
