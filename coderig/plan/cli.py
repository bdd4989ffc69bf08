"""``coderig plan``: size the hardware before you buy it.

Click commands only: each parses its options, asks :mod:`coderig.plan.planner` (or the
predictor, the memory fit, the calibration) for a result, and hands it to a renderer
(:mod:`coderig.plan.render` for tables, ``to_dict`` for ``--json``, :mod:`coderig.plan.plot`).
This module holds the group and the sizing itself (``coderig plan``); ``predict`` and ``probe``
live in :mod:`coderig.plan.cli_predict`, ``fit``, ``calibrate``, ``validate`` and ``catalog``
in :mod:`coderig.plan.cli_catalog`, their shared options in :mod:`coderig.plan.cli_options`.
"""

from __future__ import annotations

import json
import sys

import click

from coderig.cli_types import DURATION
from coderig.console import make_console
from coderig.plan.cli_options import (
    DEFAULT_MODEL,
    TYPING_PARAMS_FILE,
    TYPING_PARAMS_HELP,
    WORKLOAD_HELP,
    calibration_for,
    csv_list,
    fraction,
    json_default,
    load_catalogs,
    output_tokens_for,
    schedule_for,
    token_options,
    typing_window_options,
)
from coderig.plan.planner import evidence_note, make_plan
from coderig.plan.render import print_plan
from coderig.plan.report import PlanReport
from coderig.plan.simulate import Workload
from coderig.plan.traffic import traffic_for

__all__ = ["plan", "evidence_note"]


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
    type=DURATION,
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
@click.option(
    "--workload",
    "workload_kind",
    type=click.Choice(["attack", "typing"]),
    default="attack",
    show_default=True,
    help=WORKLOAD_HELP + " A typing plan sizes for the share of suggestions shown, not p99.",
)
@click.option("--typing-params", type=TYPING_PARAMS_FILE, help=TYPING_PARAMS_HELP)
@typing_window_options
@click.option(
    "--max-lost",
    type=float,
    default=0.05,
    show_default=True,
    callback=fraction,
    help="With --workload typing: the share of suggestions the plan may lose, against the "
    "best bf16 option's ceiling (the share shown when every developer has a replica).",
)
@click.option(
    "--min-shown",
    type=float,
    callback=fraction,
    help="With --workload typing: the share of suggestions to show, instead of --max-lost.",
)
@token_options
@click.option(
    "--duration",
    default="60s",
    show_default=True,
    type=DURATION,
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
    if opts.pop("workload_kind") == "typing":
        _plan_typing(**opts)
        return
    typing_only = ("typing_params", "stable_window_lines", "stable_window_anchor")
    typing_only += ("stable_window_max_drop",)
    for name in (*typing_only, "max_lost", "min_shown"):
        opts.pop(name)
    opts["output_tokens"] = output_tokens_for(opts["output_tokens"], "attack")
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
    try:
        traffic = traffic_for(
            developers=developers,
            seconds_between_requests=seconds_between_requests,
            rate=rate,
            percentile=percentile,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    catalog = load_catalogs(catalog_files)
    try:
        model_id = catalog.model(model).id
    except KeyError as exc:
        raise click.BadParameter(exc.args[0]) from None
    schedule = schedule_for(hours, days, schedule_text)
    calibration = calibration_for(catalog, calibrate_files, {"model": model_id})
    workload = Workload(
        rate=float(traffic.peak_rate),
        duration=duration,
        prompt_tokens=prompt_tokens,
        output_tokens=output_tokens,
        arrival=arrival,
        seed=seed,
        prefix_cache_hit=prefix_cache_hit,
    )
    try:
        report = make_plan(
            catalog,
            calibration,
            traffic=traffic,
            model=model_id,
            gpus=csv_list(gpus) or list(catalog.gpus),
            dtypes=csv_list(dtypes),
            workload=workload,
            slo_p99=slo,
            schedule=schedule,
            hours_per_month=hours_per_month,
            seat_price=seat_price,
            max_replicas=max_replicas,
            router=router,
            calibrate_files=calibrate_files,
        )
    except KeyError as exc:
        raise click.BadParameter(exc.args[0]) from None
    plot = None if no_plot else _write_plot(report, plot_dir)
    if as_json:
        click.echo(json.dumps(report.to_dict(plot), indent=2, default=json_default))
        return
    print_plan(make_console(), report, plot)


def _plan_typing(
    *, developers, rate, model, gpus, dtypes, output_tokens, duration, seed, hours, days,
    schedule_text, hours_per_month, seat_price, max_replicas, catalog_files, calibrate_files,
    typing_params, stable_window_lines, stable_window_anchor, stable_window_max_drop, max_lost,
    min_shown, as_json, **_attack_only,
) -> None:  # fmt: skip
    """``coderig plan --workload typing``: size for a team typing (no plot: the price/latency
    plot is drawn for the latency plan)."""
    from coderig.plan.render import print_typing_plan
    from coderig.plan.typing_load import Window, catalog_typing_load
    from coderig.plan.typing_plan import plan_typing
    from coderig.traffic.typing_team import TypingParams

    if not developers or rate is not None:
        raise click.UsageError(
            "--workload typing needs --developers (a team; --rate does not apply)"
        )
    catalog = load_catalogs(catalog_files)
    try:
        model_id = catalog.model(model).id
    except KeyError as exc:
        raise click.BadParameter(exc.args[0]) from None
    output_tokens = output_tokens_for(output_tokens, "typing")
    factors = calibration_for(catalog, calibrate_files, {"model": model_id}, with_loo=False).factors
    load = catalog_typing_load(
        developers, duration, TypingParams.load(typing_params),
        max_tokens=output_tokens, seed=seed,
        window=Window(stable_window_lines, stable_window_anchor, stable_window_max_drop),
    )  # fmt: skip
    try:
        report = plan_typing(
            catalog, factors, load, model=model_id, gpus=csv_list(gpus) or list(catalog.gpus),
            dtypes=csv_list(dtypes), output_tokens=output_tokens,
            schedule=schedule_for(hours, days, schedule_text), max_lost=max_lost,
            min_shown=min_shown, hours_per_month=hours_per_month, seat_price=seat_price,
            max_replicas=max_replicas,
        )  # fmt: skip
    except KeyError as exc:
        raise click.BadParameter(exc.args[0]) from None
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, default=json_default))
        return
    print_typing_plan(make_console(), report)


def _write_plot(report: PlanReport, plot_dir: str) -> list[str]:
    from coderig.plan.plot import write_plot

    paths = write_plot(
        report.points,
        plot_dir,
        slo=report.slo_p99,
        title=f"{report.model}: latency at {report.traffic.peak_rate} req/s vs monthly cost",
    )
    return [str(p) for p in paths]


def _register() -> None:
    from coderig.plan.cli_catalog import calibrate_cmd, catalog_cmd, fit_cmd, validate_cmd
    from coderig.plan.cli_predict import predict_cmd, probe_cmd

    for command in (predict_cmd, probe_cmd, fit_cmd, calibrate_cmd, validate_cmd, catalog_cmd):
        plan.add_command(command)


_register()


def main() -> None:  # pragma: no cover - convenience for python -m coderig.plan.cli
    plan(sys.argv[1:])
