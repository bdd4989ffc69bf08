"""``coderig plan fit``, ``calibrate``, ``validate`` and ``catalog``: what the catalog holds,
what fits, and how well the latency model does on measured runs."""

from __future__ import annotations

import json

import click
from rich.table import Table

from coderig.console import make_console
from coderig.plan.calibrate import predict_run, validate
from coderig.plan.cli_options import (
    DEFAULT_MODEL,
    calibration_for,
    csv_list,
    fraction,
    json_default,
    load_catalogs,
)
from coderig.plan.memory import fit, smallest_tp
from coderig.plan.render import (
    error_table,
    print_catalog,
    print_fits,
)
from coderig.plan.report import error_summary


@click.command("fit")
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
    catalog = load_catalogs(catalog_files)
    try:
        model_spec = catalog.model(model)
        gpu_specs = [catalog.gpu(g) for g in (csv_list(gpus) or list(catalog.gpus))]
        dtype_specs = [catalog.dtype(d) for d in csv_list(dtypes)]
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
@click.command("calibrate")
@click.argument("results", nargs=-1)
@click.option("--gpu", help="GPU id for results files without a gpu tag.")
@click.option("--model", help="Model id for results files without a model tag.")
@click.option("--dtype", help="dtype for results files without a dtype tag.")
@click.option("--replicas", type=int, help="Replica count for files without a replicas tag.")
@click.option(
    "--prefix-cache-hit",
    type=float,
    default=None,
    callback=fraction,
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
    catalog = load_catalogs(catalog_files)
    overrides = {
        "gpu": gpu,
        "model": model,
        "dtype": dtype,
        "replicas": replicas,
        "prefix_cache_hit": prefix_cache_hit,
        "identical_prompts": identical_prompts,
    }
    calibration = calibration_for(catalog, tuple(results), overrides, refit=True)
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
                default=json_default,
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
@click.command("validate")
@click.option("--catalog", "catalog_files", multiple=True)
@click.option("--markdown", is_flag=True, help="The table as Markdown (what BENCHMARKS.md quotes).")
@click.option("--json", "as_json", is_flag=True)
def validate_cmd(catalog_files, markdown, as_json):
    """Out-of-sample error: predict every published run the factors were never fitted on."""
    from coderig.plan.calibrate import load_calibration
    from coderig.plan.validation import markdown_table, out_of_sample, summary

    catalog = load_catalogs(catalog_files)
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
                default=json_default,
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
@click.command("catalog")
@click.option("--catalog", "catalog_files", multiple=True)
@click.option("--json", "as_json", is_flag=True)
def catalog_cmd(catalog_files, as_json):
    """List GPUs and models (shipped, merged with your catalog files)."""
    catalog = load_catalogs(catalog_files)
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
