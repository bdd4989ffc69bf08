"""``coderig plan``: size the hardware before you buy it.

Click commands only: each parses its options, asks :mod:`coderig.plan.planner` (or the
predictor, the memory fit, the calibration) for a result, and hands it to a renderer
(:mod:`coderig.plan.render` for tables, ``to_dict`` for ``--json``, :mod:`coderig.plan.plot`).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import click
from rich.table import Table

from coderig.cli_types import DURATION
from coderig.console import make_console
from coderig.on_hours import Schedule
from coderig.plan.calibrate import predict_run, validate
from coderig.plan.catalog import Catalog, load_catalog
from coderig.plan.memory import fit, smallest_tp
from coderig.plan.planner import Calibrated, calibrated, evidence_note, make_plan
from coderig.plan.predict import Deployment, predict
from coderig.plan.render import (
    error_table,
    print_catalog,
    print_fits,
    print_plan,
    print_prediction,
    print_typing_prediction,
)
from coderig.plan.report import PlanReport, error_summary
from coderig.plan.roofline import Factors
from coderig.plan.simulate import Workload
from coderig.plan.traffic import traffic_for

__all__ = ["plan", "evidence_note"]

DEFAULT_MODEL = "qwen2.5-coder-7b"


def _csv(value: str | None) -> list[str]:
    return [item.strip().lower() for item in (value or "").split(",") if item.strip()]


PREFIX_CACHE_HELP = (
    "Fraction of each prompt vLLM serves from its prefix cache instead of prefilling it "
    "(0-1, rounded down to whole KV blocks). 0 (default) plans for distinct prompts, the "
    "conservative case; completions of one developer share most of their prompt with the "
    "previous one, so a prefix-aware router can reach far more."
)


WORKLOAD_HELP = (
    "attack: requests at a rate, as `coderig bench attack` sends them; typing: --developers "
    "typing, the script `coderig bench typing` sends (same traffic code and seed): requests "
    "after each pause, cancelled at the next keystroke, continuing the previous prompt."
)
TYPING_PARAMS_HELP = (
    "With --workload typing: a typing-model TOML, as `coderig bench typing --params`."
)
TYPING_PARAMS_FILE = click.Path(exists=True, dir_okay=False)
ANCHOR_HELP = "With --workload typing: the gateway's --stable-window-anchor."
ANCHOR_CHOICE = click.Choice(["developer", "content"])
WINDOW_HELP = (
    "With --workload typing: the gateway's --stable-window-lines (0: prompts as an editor "
    "sends them to the engine directly)."
)
OUTPUT_TOKENS_HELP = "Tokens per answer [default: 128; 64 with --workload typing, as bench typing]."


def _output_tokens(value: int | None, workload: str) -> int:
    if value is not None:
        return value
    return 64 if workload == "typing" else 128


def _fraction(_ctx, _param, value):
    if value is not None and not 0.0 <= value <= 1.0:
        raise click.BadParameter("must be between 0 and 1")
    return value


def _load(catalog_files: tuple[str, ...]) -> Catalog:
    try:
        return load_catalog(catalog_files)
    except (OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None


def _calibration(
    catalog: Catalog,
    calibrate_files: tuple[str, ...],
    overrides: dict,
    *,
    with_loo: bool = True,
    refit: bool = False,
) -> Calibrated:
    try:
        return calibrated(catalog, calibrate_files, overrides, with_loo=with_loo, refit=refit)
    except (OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None


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
@click.option("--stable-window-lines", type=int, default=16, show_default=True, help=WINDOW_HELP)
@click.option(
    "--stable-window-anchor",
    type=ANCHOR_CHOICE,
    default="developer",
    show_default=True,
    help=ANCHOR_HELP,
)
@click.option(
    "--stable-window-max-drop",
    type=click.FloatRange(0, 0.75, min_open=True),
    default=0.5,
    show_default=True,
    help="With --workload typing: the gateway's --stable-window-max-drop.",
)
@click.option(
    "--max-lost",
    type=float,
    default=0.05,
    show_default=True,
    callback=_fraction,
    help="With --workload typing: the share of suggestions the plan may lose, against the "
    "best bf16 option's ceiling (the share shown when every developer has a replica).",
)
@click.option(
    "--min-shown",
    type=float,
    callback=_fraction,
    help="With --workload typing: the share of suggestions to show, instead of --max-lost.",
)
@click.option("--prompt-tokens", type=int, default=700, show_default=True)
@click.option("--output-tokens", type=int, default=None, help=OUTPUT_TOKENS_HELP)
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
    opts["output_tokens"] = _output_tokens(opts["output_tokens"], "attack")
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
    catalog = _load(catalog_files)
    try:
        model_id = catalog.model(model).id
    except KeyError as exc:
        raise click.BadParameter(exc.args[0]) from None
    schedule = _schedule(hours, days, schedule_text)
    calibration = _calibration(catalog, calibrate_files, {"model": model_id})
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
            gpus=_csv(gpus) or list(catalog.gpus),
            dtypes=_csv(dtypes),
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
        click.echo(json.dumps(report.to_dict(plot), indent=2, default=_json_default))
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
    catalog = _load(catalog_files)
    try:
        model_id = catalog.model(model).id
    except KeyError as exc:
        raise click.BadParameter(exc.args[0]) from None
    output_tokens = _output_tokens(output_tokens, "typing")
    factors = _calibration(catalog, calibrate_files, {"model": model_id}, with_loo=False).factors
    load = catalog_typing_load(
        developers, duration, TypingParams.load(typing_params),
        max_tokens=output_tokens, seed=seed,
        window=Window(stable_window_lines, stable_window_anchor, stable_window_max_drop),
    )  # fmt: skip
    try:
        report = plan_typing(
            catalog, factors, load, model=model_id, gpus=_csv(gpus) or list(catalog.gpus),
            dtypes=_csv(dtypes), output_tokens=output_tokens,
            schedule=_schedule(hours, days, schedule_text), max_lost=max_lost,
            min_shown=min_shown, hours_per_month=hours_per_month, seat_price=seat_price,
            max_replicas=max_replicas,
        )  # fmt: skip
    except KeyError as exc:
        raise click.BadParameter(exc.args[0]) from None
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, default=_json_default))
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


def _json_default(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    raise TypeError(f"not JSON serialisable: {value!r}")


# ---------------------------------------------------------------------------------------------
@plan.command("predict")
@click.option(
    "--gpu",
    "--hardware",
    "gpu",
    required=True,
    help="GPU id, e.g. h100-sxm; or 'local': this machine's CPU running llama-server as "
    "`coderig serve` does, from `coderig plan probe`.",
)
@click.option(
    "--model",
    default=None,
    help=f"Model id [default: {DEFAULT_MODEL}; with --hardware local, the probed model].",
)
@click.option("--dtype", default="bf16", show_default=True)
@click.option(
    "--tensor-parallel",
    type=int,
    default=None,
    help="GPUs per replica (default: the smallest that fits).",
)
@click.option("--replicas", type=int, default=1, show_default=True)
@click.option("--rate", type=float, help="Requests per second (an attack).")
@click.option(
    "--workload",
    "workload_kind",
    type=click.Choice(["attack", "typing"]),
    default="attack",
    show_default=True,
    help=WORKLOAD_HELP,
)
@click.option("--developers", type=int, help="With --workload typing: the team's size.")
@click.option("--typing-params", type=TYPING_PARAMS_FILE, help=TYPING_PARAMS_HELP)
@click.option("--stable-window-lines", type=int, default=16, show_default=True, help=WINDOW_HELP)
@click.option(
    "--stable-window-anchor",
    type=ANCHOR_CHOICE,
    default="developer",
    show_default=True,
    help=ANCHOR_HELP,
)
@click.option(
    "--stable-window-max-drop",
    type=click.FloatRange(0, 0.75, min_open=True),
    default=0.5,
    show_default=True,
    help="With --workload typing: the gateway's --stable-window-max-drop.",
)
@click.option("--duration", default="5s", show_default=True, type=DURATION)
@click.option(
    "--arrival", type=click.Choice(["constant", "poisson"]), default="constant", show_default=True
)
@click.option("--prompt-tokens", type=int, default=700, show_default=True)
@click.option("--output-tokens", type=int, default=None, help=OUTPUT_TOKENS_HELP)
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
@click.option(
    "--probe",
    "probe_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="With --hardware local: the probe to use [default: the last `coderig plan probe`].",
)
@click.option("--json", "as_json", is_flag=True)
def predict_cmd(
    gpu,
    model,
    dtype,
    tensor_parallel,
    replicas,
    rate,
    workload_kind,
    developers,
    typing_params,
    stable_window_lines,
    stable_window_anchor,
    stable_window_max_drop,
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
    probe_file,
    as_json,
):
    """Predict p50/p90/p99 latency and TTFT for one configuration under one load."""
    output_tokens = _output_tokens(output_tokens, workload_kind)
    if workload_kind == "typing":
        from coderig.plan.typing_load import Window

        if not developers:
            raise click.UsageError("--workload typing needs --developers")
        _predict_typing(
            gpu, model, dtype, tensor_parallel, replicas, developers, duration, seed,
            output_tokens, typing_params,
            Window(stable_window_lines, stable_window_anchor, stable_window_max_drop),
            catalog_files, calibrate_files,
            probe_file, as_json,
        )  # fmt: skip
        return
    if rate is None:
        raise click.UsageError("--rate is needed (or --workload typing with --developers)")
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
    if gpu.lower() == "local":
        _predict_local(model, tensor_parallel, replicas, probe_file, workload, as_json)
        return
    catalog, factors, deployment = _catalog_deployment(
        catalog_files, calibrate_files, gpu, model, dtype, tensor_parallel, replicas
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
    print_prediction(make_console(), prediction)


def _catalog_deployment(
    catalog_files, calibrate_files, gpu, model, dtype, tensor_parallel, replicas
) -> tuple[Catalog, Factors, Deployment]:
    """The catalog, its calibrated factors, and the deployment the options name (the smallest
    tensor parallelism that fits unless one is given); click errors for what cannot be."""
    catalog = _load(catalog_files)
    model = model or DEFAULT_MODEL
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
    factors = _calibration(
        catalog, calibrate_files, {"gpu": gpu_spec.id, "model": model_spec.id}, with_loo=False
    ).factors
    deployment = Deployment(gpu_spec.id, model_spec.id, dtype_spec.id, tensor_parallel, replicas)
    return catalog, factors, deployment


def _local_probe(model, tensor_parallel, replicas, probe_file):
    """The probe ``--hardware local`` plans with; a usage error for options it cannot take."""
    from coderig.plan.local import load_probe

    if model is not None or (tensor_parallel or 1) != 1 or replicas != 1:
        raise click.UsageError(
            "--hardware local predicts one llama-server replica of the model it probed: "
            "--model, --tensor-parallel and --replicas do not apply (probe another model "
            "with `coderig plan probe --model-path FILE`)"
        )
    try:
        return load_probe(probe_file)
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None


def _predict_local(model, tensor_parallel, replicas, probe_file, workload, as_json) -> None:
    from coderig.plan.local import local_step_model, predict_local, probe_summary

    probe = _local_probe(model, tensor_parallel, replicas, probe_file)
    try:
        prediction = predict_local(probe, workload)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        data = prediction.to_dict()
        data["factors"] = local_step_model(probe).factors.to_dict()
        data["probe"] = json.loads(probe.to_json())
        click.echo(json.dumps(data, indent=2, default=_json_default))
        return
    console = make_console()
    console.print(f"local: {probe_summary(probe)}")
    print_prediction(console, prediction)


def _predict_typing(
    gpu, model, dtype, tensor_parallel, replicas, developers, duration, seed, output_tokens,
    params_file, window, catalog_files, calibrate_files, probe_file, as_json,
) -> None:  # fmt: skip
    """A typing team on one configuration: share of suggestions shown, their latency."""
    from coderig.plan.typing_load import catalog_engine, local_engine, predict_typing
    from coderig.traffic.typing_team import TypingParams

    if gpu.lower() == "local":
        engine = local_engine(_local_probe(model, tensor_parallel, replicas, probe_file))
    else:
        catalog, factors, deployment = _catalog_deployment(
            catalog_files, calibrate_files, gpu, model, dtype, tensor_parallel, replicas
        )
        try:
            engine = catalog_engine(catalog, factors, deployment)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
    load, outcome = predict_typing(
        engine, developers, duration, TypingParams.load(params_file),
        max_tokens=output_tokens, seed=seed, window=window,
    )  # fmt: skip
    if as_json:
        data = {
            "hardware": gpu,
            "developers": developers,
            "duration": duration,
            "mean_prompt_tokens": load.mean_prompt_tokens,
            "shared_prompt_share": load.shared_share,
            **outcome.to_dict(),
        }
        click.echo(json.dumps(data, indent=2, default=_json_default))
        return
    print_typing_prediction(make_console(), engine.describe, load, outcome, output_tokens)


@plan.command("probe")
@click.option(
    "--model-path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="GGUF to probe [default: the embedded model, as `coderig serve` runs].",
)
@click.option("--threads", type=int, help="[default: every core, as `coderig serve`]")
@click.option("--slots", type=int, default=4, show_default=True)
@click.option("--batch-size", type=int, default=512, show_default=True)
@click.option("--max-model-len", type=int, default=4096, show_default=True)
@click.option("--llama-server", "llama_server", help="llama-server binary [default: as serve].")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the probe [default: ~/.cache/coderig/plan/local-probe.json].",
)
def probe_cmd(model_path, threads, slots, batch_size, max_model_len, llama_server, out):
    """Measure this machine's CPU with llama-server, for `plan predict --hardware local`.

    Starts `coderig serve` (same defaults) and times, with streamed requests: a request's
    overhead, a lone prompt, one and all slots decoding (under a minute). Writes what it found.
    """
    import os

    from coderig.models import embedded_model_path
    from coderig.plan.local import default_probe_path, probe_summary, run_probe

    console = make_console()
    probe = run_probe(
        model_path or embedded_model_path(),
        threads=threads or os.cpu_count() or 1,
        slots=slots,
        batch_size=batch_size,
        n_ctx=max_model_len,
        llama_server=llama_server,
        say=lambda text: console.print(f"[dim]{text}[/]"),
    )
    out = out or default_probe_path()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(probe.to_json())
    console.print(f"{probe_summary(probe)}\nwritten to {out}")


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
    print_fits(make_console(), catalog, model_spec, dtype_specs, rows)


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
    calibration = _calibration(catalog, tuple(results), overrides, refit=True)
    factors, runs, loo = calibration.factors, calibration.runs, calibration.loo
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
                    "summary": error_summary(loo, "leave-one-run-out"),
                    "validation": [row.to_dict() for row in validation],
                    "validation_summary": error_summary(validation, "validation"),
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
    console.print(error_table(loo, "Leave-one-run-out: each run predicted by a fit on the others"))
    console.print(error_summary(loo, "leave-one-run-out"))
    for run, predicted in in_sample:
        console.print(
            f"  in-sample {run.id}: "
            + ", ".join(f"{m} {run.measured[m]:.3f} → {predicted[m]:.3f}" for m in run.measured)
        )
    if validation:
        console.print(
            error_table(validation, "Validation (never fitted on): other GPUs, model sizes, dtypes")
        )
        console.print(error_summary(validation, "validation"))


# ---------------------------------------------------------------------------------------------
@plan.command("validate")
@click.option("--catalog", "catalog_files", multiple=True)
@click.option("--markdown", is_flag=True, help="The table as Markdown (what BENCHMARKS.md quotes).")
@click.option("--json", "as_json", is_flag=True)
def validate_cmd(catalog_files, markdown, as_json):
    """Out-of-sample error: predict every published run the factors were never fitted on."""
    from coderig.plan.calibrate import load_calibration
    from coderig.plan.validation import markdown_table, out_of_sample, summary

    catalog = _load(catalog_files)
    cal = load_calibration()
    rows = out_of_sample(catalog, cal.factors, cal.runs)
    result = summary(rows)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "factors": cal.factors.to_dict(),
                    "rows": [r.to_dict() for r in rows],
                    "summary": result.__dict__,
                },
                indent=2,
                default=_json_default,
            )
        )
        return
    if markdown:
        click.echo(markdown_table(rows))
        return
    console = make_console()
    console.print(
        error_table([r.row for r in rows], "Published runs never fitted on (shipped factors)")
    )
    console.print(result.describe())


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
    print_catalog(make_console(), catalog)


def main() -> None:  # pragma: no cover - convenience for python -m coderig.plan.cli
    plan(sys.argv[1:])
