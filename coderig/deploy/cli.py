"""``coderig deploy ray``: the gateway and its replicas as a Ray Serve application."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import click
from rich.console import Console

from coderig.cli_types import DURATION
from coderig.deploy.ray_app_config import APP_NAME, RayAppConfig


@click.group()
def deploy() -> None:
    """Run coderig on a cluster (Ray Serve, KubeRay)."""


@deploy.command("ray")
@click.option(
    "--address",
    default="auto",
    show_default=True,
    help="The Ray cluster (ray start --head prints it); 'auto' finds a local one.",
)
@click.option("--name", default=APP_NAME, show_default=True, help="Serve application name.")
@click.option("--model", "-m", default=None, help="As for coderig serve. Default: embedded.")
@click.option("--served-model-name", default=None)
@click.option(
    "--engine", type=click.Choice(["llamacpp", "vllm"]), default="llamacpp", show_default=True
)
@click.option("--threads-per-replica", type=click.IntRange(1), default=1, show_default=True)
@click.option(
    "--gpus-per-replica",
    type=click.FloatRange(0),
    default=None,
    help="GPUs a replica reserves. Default: 1 for vllm, 0 for llamacpp.",
)
@click.option("--max-model-len", type=click.IntRange(16), default=4096, show_default=True)
@click.option(
    "--replicas",
    "initial_replicas",
    type=click.IntRange(0),
    default=None,
    help="Replicas to start with. Default: max(--min-replicas, 1).",
)
@click.option("--min-replicas", type=click.IntRange(0), default=0, show_default=True)
@click.option("--max-replicas", type=click.IntRange(1), default=2, show_default=True)
@click.option(
    "--target-ongoing-requests",
    type=click.FloatRange(0, min_open=True),
    default=None,
    help="Requests in flight per replica the autoscaler aims for. Default: 1 for llama.cpp "
    "(one at a time), 32 for vLLM (it batches).",
)
@click.option(
    "--idle-shutdown",
    type=DURATION,
    default="15m",
    show_default=True,
    help="Scale down (to --min-replicas, 0 = scale to zero) after this long without load.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Serve's HTTP proxy host.")
@click.option("--port", "-p", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option(
    "--k8s-manifest",
    type=click.Path(dir_okay=False, allow_dash=True),
    default=None,
    help="Write a KubeRay RayService manifest ('-' for stdout) instead of deploying.",
)
@click.option(
    "--serve-config",
    type=click.Path(dir_okay=False, allow_dash=True),
    default=None,
    help="Write a Serve config file for `serve deploy` instead of deploying.",
)
@click.option("--image", default=None, help="Container image for --k8s-manifest.")
@click.option("--gpu-type", default=None, help="nvidia.com/gpu.product node selector (k8s).")
@click.option("--delete", is_flag=True, help="Remove the application from the cluster.")
def ray_command(**options) -> None:
    """Deploy the gateway and its replicas as a Ray Serve application, autoscaled on requests
    in flight (down to zero with --min-replicas 0), or write its KubeRay manifest."""
    console = Console(stderr=True)
    config = config_from_options(options)
    if options["k8s_manifest"] or options["serve_config"]:
        write_files(config, options, console)
        return
    run_on_ray(config, options, console)


def config_from_options(options: dict) -> RayAppConfig:
    vllm = options["engine"] == "vllm"
    gpus = options["gpus_per_replica"]
    target = options["target_ongoing_requests"] or (32.0 if vllm else 1.0)
    idle = options["idle_shutdown"]
    if options["min_replicas"] > options["max_replicas"]:
        raise click.BadParameter("must not exceed --max-replicas", param_hint="--min-replicas")
    return RayAppConfig(
        model=options["model"],
        served_model_name=options["served_model_name"],
        engine=options["engine"],
        threads_per_replica=options["threads_per_replica"],
        gpus_per_replica=gpus if gpus is not None else (1.0 if vllm else 0.0),
        max_model_len=options["max_model_len"],
        min_replicas=options["min_replicas"],
        max_replicas=options["max_replicas"],
        initial_replicas=options["initial_replicas"],
        target_ongoing_requests=target,
        max_ongoing_requests=max(4, int(target * 2)),
        downscale_delay_s=idle,
        startup_timeout_s=1800.0 if vllm else 300.0,  # a 7B+ checkpoint downloads and compiles
    )


def write_files(config: RayAppConfig, options: dict, console: Console) -> None:
    from coderig.deploy.kuberay import dump_yaml, rayservice, serve_config

    if options["k8s_manifest"]:
        manifest = rayservice(
            config, name=options["name"], image=options["image"], gpu_type=options["gpu_type"]
        )
        _write(options["k8s_manifest"], dump_yaml(manifest), console, "KubeRay RayService")
    if options["serve_config"]:
        text = dump_yaml(serve_config(config, name=options["name"], port=options["port"]))
        _write(options["serve_config"], text, console, "Serve config")


def _write(target: str, text: str, console: Console, what: str) -> None:
    if target == "-":
        sys.stdout.write(text)
        return
    Path(target).write_text(text)
    console.print(f"wrote {what} to {target}")


def run_on_ray(config: RayAppConfig, options: dict, console: Console) -> None:
    try:
        import ray
        from ray import serve
    except ImportError as exc:
        raise click.ClickException(
            "coderig deploy ray needs Ray Serve: pip install 'coderig[ray]'"
        ) from exc
    from coderig.deploy.ray_app import build_app

    check_reachable(options["address"])
    try:
        ray.init(address=options["address"], logging_level="warning", log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise click.ClickException(
            f"cannot reach a Ray cluster at {options['address']} ({exc}); "
            "start one with: ray start --head"
        ) from exc
    try:
        if options["delete"]:
            serve.delete(options["name"])
            console.print(f"deleted Serve application {options['name']}")
            return
        serve.start(http_options={"host": options["host"], "port": options["port"]})
        console.print(
            f"deploying [cyan]{options['name']}[/] on Ray: {config.min_replicas}.."
            f"{config.max_replicas} replica(s), scale down after {config.downscale_delay_s:g}s idle"
        )
        serve.run(build_app(config.to_dict()), name=options["name"], route_prefix="/")
    finally:
        ray.shutdown()
    host = options["host"]
    shown = f"[{host}]" if ":" in host else host
    console.print(
        f"[bold green]coderig is serving[/] on Ray Serve at "
        f"[bold]http://{shown}:{options['port']}/v1[/] (remove with: coderig deploy ray --delete)"
    )


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds, not after Ray's minutes of retries, when host:port does not answer."""
    if address in ("auto", "local") or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise click.BadParameter("expected host:port or 'auto'", param_hint="--address")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise click.ClickException(
            f"no Ray cluster answers at {address} ({exc.strerror or exc}); "
            "start one with: ray start --head"
        ) from exc
