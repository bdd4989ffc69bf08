"""Human output of ``coderig plan`` and its subcommands: rich tables and sentences.

Only formatting lives here: every number comes from a :class:`~coderig.plan.report.PlanReport`,
a :class:`~coderig.plan.predict.Prediction`, memory fits or a list of
:class:`~coderig.plan.calibrate.LooRow`, so the table, the JSON and the plot show the same plan.
"""

from __future__ import annotations

import math

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from coderig.plan.calibrate import LooRow
from coderig.plan.catalog import Catalog, DType, Model
from coderig.plan.memory import TP_DEGREES, Fit
from coderig.plan.predict import Prediction
from coderig.plan.report import PlanReport, error_summary
from coderig.plan.typing_load import TypingLoad, TypingOutcome
from coderig.plan.typing_plan import TypingPlan

__all__ = [
    "error_table",
    "options_table",
    "print_catalog",
    "print_fits",
    "print_plan",
    "print_prediction",
    "print_typing_plan",
    "print_typing_prediction",
    "recommendation_text",
    "typing_recommendation_text",
]


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


def print_prediction(console: Console, prediction: Prediction) -> None:
    """``coderig plan predict``: the configuration and load, then latency and TTFT quantiles."""
    d, w, r = prediction.deployment, prediction.workload, prediction.result
    console.print(
        f"{d.replicas}x {d.gpu} ({d.dtype}, TP={d.tensor_parallel}) serving "
        f"{d.model}: {w.rate:g} req/s {w.arrival} for {w.duration:g} s, "
        f"{w.prompt_tokens} in / {w.output_tokens} out"
        + (
            ", one body repeated (prefix cache)"
            if w.identical_prompts
            else f", {w.prefix_cache_hit:.0%} of each prompt from the prefix cache"
            if w.prefix_cache_hit
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
        f"{r.max_waiting}, "
        + (f"{r.preemptions} preempted for KV space, " if r.preemptions else "")
        + f"API-server load {r.frontend_utilization:.0%}"
    )


def print_typing_prediction(
    console: Console, where: str, load: TypingLoad, outcome: TypingOutcome, output_tokens: int
) -> None:
    """``coderig plan predict --workload typing``: the team's load, then what it saw."""
    console.print(
        f"{where}: {load.developers} developers typing for {load.duration:g} s "
        f"({outcome.rate:.2f} requests/s after the debounce, {load.mean_prompt_tokens:.0f}-token "
        f"prompts, {load.shared_share:.0%} of them shared with the developer's previous one), "
        f"{output_tokens} tokens per suggestion"
    )
    console.print(
        f"shown {outcome.shown} of {outcome.requests} ({outcome.shown_share:.1%}), "
        f"cancelled {outcome.cancelled}; shown latency p50 {outcome.shown_p50:.3f} s, "
        f"p90 {outcome.shown_p90:.3f} s"
    )


def print_fits(
    console: Console,
    catalog: Catalog,
    model: Model,
    dtypes: list[DType],
    rows: list[tuple[Fit, Fit | None]],
) -> None:
    """``coderig plan fit``: per GPU and dtype, one GPU's fit and the smallest TP that holds it."""
    console.print(
        f"{model.id}: {model.params / 1e9:.2f} B parameters, KV cache "
        f"{model.kv_bytes_per_token(catalog.kv_bytes_per_element) / 1024:.0f} KiB/token; "
        + ", ".join(f"{d.id} weights {model.weight_bytes(d) / 1e9:.1f} GB" for d in dtypes)
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


def print_catalog(console: Console, catalog: Catalog) -> None:
    """``coderig plan catalog``: the GPUs and models the planner knows, with their sources."""
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


def typing_recommendation_text(plan: TypingPlan) -> str:
    """The one-sentence answer for a typing team."""
    best = plan.recommendation
    developers = plan.load.developers
    if best is None or best.outcome is None or best.cost is None:
        return (
            f"No catalog configuration shows {plan.target:.1%} of {developers} developers' "
            "suggestions; lower the target (--min-shown, --max-lost), shorten suggestions "
            "(--output-tokens), or add GPUs to the catalog."
        )
    monthly = plan.monthly(best) or 0.0
    when = " always on" if plan.always_on else f" on '{plan.schedule}' with scale-to-zero"
    tp = f", TP={best.tensor_parallel}" if best.tensor_parallel > 1 else ""
    seats = developers * plan.seat_price
    verdict = "cheaper" if monthly < seats else "dearer"
    text = (
        f"Recommendation: {best.replicas}x {best.gpu} ({best.dtype}{tp}) — "
        f"{best.outcome.shown_share:.1%} of suggestions shown (ceiling {best.ceiling:.1%}), "
        f"shown p50 {best.outcome.shown_p50:.2f}s, ${monthly:,.0f}/month{when}, "
        f"${monthly / developers:,.2f}/developer; {verdict} than {developers} seats at "
        f"${plan.seat_price:g} (${seats:,.0f}/month)"
    )
    if best.dtype != "bf16":
        text += f" [{best.dtype} is quantised: check completion quality]"
    return text + "."


def print_typing_plan(console: Console, plan: TypingPlan) -> None:
    """``coderig plan --workload typing``: the team's load, the target, the ranked table."""
    load = plan.load
    console.print(
        f"[bold]Traffic[/bold]: {load.developers} developers typing at once for "
        f"{load.duration:g} s, as `coderig bench typing` replays them: {load.rate:.1f} "
        f"requests/s after the debounce, {load.mean_prompt_tokens:.0f}-token prompts "
        f"({load.shared_share:.0%} shared with the developer's previous one), "
        f"{plan.output_tokens} tokens per suggestion; schedule: {plan.schedule}"
    )
    why = (
        f"{1 - plan.max_lost:.0%} of the best ceiling, {plan.best_ceiling:.1%}: the share shown "
        "when each developer has a replica to themselves, on the best bf16 option deployed plainly"
        if plan.max_lost is not None
        else "--min-shown"
    )
    console.print(
        f"  target: [bold]{plan.target:.1%} of suggestions shown[/bold] (complete before the "
        f"next keystroke; {why})"
    )
    scheduled = not plan.always_on
    table = Table(title=f"Hardware for {plan.model}, ranked by monthly cost", title_justify="left")
    columns = ["#", "GPU", "dtype", "TP", "replicas", "shown", "ceiling", "shown p50 s"]
    columns += ["$/month 24x7"] + (["$/month sched."] if scheduled else []) + ["$/dev", "note"]
    for column in columns:
        table.add_column(
            column, justify="right" if column not in ("GPU", "dtype", "note") else "left"
        )
    for rank, option in enumerate(plan.options, 1):
        cost, outcome = option.cost, option.outcome
        ceiling = f"{option.ceiling:.1%}" if option.tensor_parallel else "-"
        tp = str(option.tensor_parallel) if option.tensor_parallel else "-"
        if option.feasible and cost and outcome:
            per_dev = cost.per_developer_scheduled if scheduled else cost.per_developer
            row = [
                str(rank), option.gpu, option.dtype, tp, str(option.replicas),
                f"{outcome.shown_share:.1%}", ceiling, f"{outcome.shown_p50:.2f}",
                money(cost.monthly_always_on),
            ]  # fmt: skip
            row += [money(cost.monthly_scheduled)] if scheduled else []
            row += [money(per_dev), ""]
        else:
            row = ["-", option.gpu, option.dtype, tp, "-", "-", ceiling, "-", "-"]
            row += ["-"] if scheduled else []
            row += ["-", option.reason]
        table.add_row(*row, style=None if option.feasible else "dim")
    console.print(table)
    console.print(f"[bold green]{escape(typing_recommendation_text(plan))}[/bold green]")
