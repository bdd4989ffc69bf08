"""``coderig plan predict`` (one configuration under one load: a GPU from the catalog, or this
machine from ``coderig plan probe``) and ``coderig plan probe``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from coderig.cli_types import DURATION
from coderig.console import make_console
from coderig.plan.catalog import Catalog
from coderig.plan.cli_options import (
    DEFAULT_MODEL,
    TYPING_PARAMS_FILE,
    TYPING_PARAMS_HELP,
    WORKLOAD_HELP,
    calibration_for,
    json_default,
    load_catalogs,
    output_tokens_for,
    token_options,
    typing_window_options,
)
from coderig.plan.memory import smallest_tp
from coderig.plan.predict import Deployment, predict
from coderig.plan.render import (
    print_prediction,
    print_typing_prediction,
)
from coderig.plan.roofline import Factors
from coderig.plan.simulate import Workload


@click.command("predict")
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
@typing_window_options
@click.option("--duration", default="5s", show_default=True, type=DURATION)
@click.option(
    "--arrival", type=click.Choice(["constant", "poisson"]), default="constant", show_default=True
)
@token_options
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
    output_tokens = output_tokens_for(output_tokens, workload_kind)
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
        click.echo(json.dumps(data, indent=2, default=json_default))
        return
    print_prediction(make_console(), prediction)


def _catalog_deployment(
    catalog_files, calibrate_files, gpu, model, dtype, tensor_parallel, replicas
) -> tuple[Catalog, Factors, Deployment]:
    """The catalog, its calibrated factors, and the deployment the options name (the smallest
    tensor parallelism that fits unless one is given); click errors for what cannot be."""
    catalog = load_catalogs(catalog_files)
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
    factors = calibration_for(
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
        click.echo(json.dumps(data, indent=2, default=json_default))
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
        click.echo(json.dumps(data, indent=2, default=json_default))
        return
    print_typing_prediction(make_console(), engine.describe, load, outcome, output_tokens)


@click.command("probe")
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
    overhead, a lone prompt, one sequence decoding at a short and a long context, a
    continuation of a short and a long cached prompt, and all slots decoding at a short and a
    long context (about 40 s). Writes what it found.
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
