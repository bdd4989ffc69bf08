"""Human output of ``coderig plan``: the report as rich tables and sentences.

Only formatting lives here: every number comes from a :class:`~coderig.plan.report.PlanReport`
(or a list of :class:`~coderig.plan.calibrate.LooRow`), so the table, the JSON and the plot
show the same plan.
"""

from __future__ import annotations

import math

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from coderig.plan.calibrate import LooRow
from coderig.plan.report import PlanReport, error_summary

__all__ = ["error_table", "options_table", "print_plan", "recommendation_text"]


def money(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"${value:,.0f}"


def recommendation_text(report: PlanReport) -> str:
    """The one-sentence answer: what to buy, what it costs, how it compares with seats."""
    rec = report.recommendation
    if rec is None or rec.option.result is None:
        return (
            f"No catalog configuration meets p99 ≤ {report.slo_p99:g}s at "
            f"{report.traffic.peak_rate} req/s; "
            "relax the SLO, shorten outputs, or add GPUs to the catalog."
        )
    best = rec.option
    when = f" on '{rec.schedule}' with scale-to-zero" if rec.scheduled else " always on"
    tp = f", TP={best.tensor_parallel}" if best.tensor_parallel > 1 else ""
    text = (
        f"Recommendation: {best.replicas}x {best.gpu} ({best.dtype}{tp}) — "
        f"p99 {best.result.latency_p99:.2f}s at {report.traffic.peak_rate} req/s, "
        f"${rec.monthly:,.0f}/month{when}"
    )
    if rec.developers and rec.seats_monthly is not None and rec.per_developer is not None:
        verdict = "cheaper" if rec.monthly < rec.seats_monthly else "dearer"
        text += (
            f", ${rec.per_developer:,.2f}/developer; {verdict} than {rec.developers} seats "
            f"at ${rec.seat_price:g} (${rec.seats_monthly:,.0f}/month)"
        )
    if best.dtype != "bf16":
        text += f" [{best.dtype} is quantised: check completion quality]"
    return text + "."


def error_table(rows: list[LooRow], title: str) -> Table:
    """Measured against predicted, one row per (run, metric)."""
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


def options_table(report: PlanReport) -> Table:
    """Every option ranked by the bill; infeasible ones dimmed with their reason."""
    scheduled = not report.always_on
    developers = report.developers
    table = Table(
        title=f"Hardware for {report.model}, ranked by monthly cost", title_justify="left"
    )
    columns = ["#", "GPU", "dtype", "TP", "replicas", "p50 s", "p99 s", "$/month 24x7"]
    if scheduled:
        columns.append("$/month sched.")
    columns += ["$/dev", "= seats", "note"]
    for column in columns:
        table.add_column(
            column, justify="right" if column not in ("GPU", "dtype", "note") else "left"
        )
    for rank, ranked in enumerate(report.options, 1):
        option = ranked.option
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
                money(cost.monthly_always_on),
            ]
            if scheduled:
                row.append(money(cost.monthly_scheduled))
            row += [money(per_dev) if developers else "-", f"{seats:.0f}", ranked.note]
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


def print_plan(console: Console, report: PlanReport, plot: list[str] | None = None) -> None:
    """The human answer: traffic, the simulated load, the ranked table, the recommendation,
    and how wrong the latency model was on the runs it was calibrated on."""
    traffic, w = report.traffic, report.workload
    console.print(
        f"[bold]Traffic[/bold]: average {traffic.average_rate:g} req/s"
        + (
            f" ({traffic.developers} developers, one request every "
            f"{traffic.seconds_between_requests:g} s)"
            if traffic.developers
            else ""
        )
    )
    console.print(
        f"  peak at p{traffic.percentile:g} of the Poisson per-second count: "
        f"[bold]{traffic.peak_rate} req/s[/bold] (exact; used)   "
        f"normal approximation λ+3√λ: {traffic.normal_peak_rate:.1f} req/s"
    )
    console.print(
        f"  simulated: {traffic.peak_rate} req/s {w.arrival} for {w.duration:g} s, "
        f"{w.prompt_tokens}-token prompts ({w.prefix_cache_hit:.0%} from the prefix cache), "
        f"{w.output_tokens} output tokens; SLO p99 ≤ {report.slo_p99:g} s; "
        f"schedule: {report.schedule}"
    )
    console.print(options_table(report))
    console.print(f"[bold green]{escape(recommendation_text(report))}[/bold green]")
    console.print(error_table(report.calibration_loo, "Calibration: leave-one-run-out error"))
    console.print(error_summary(report.calibration_loo, "leave-one-run-out"))
    if plot:
        console.print(f"price/performance plot: {plot[0]} and {plot[1]}")
