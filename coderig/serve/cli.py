"""``coderig serve``: the gateway in front of supervised engine replicas."""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path

import click
from click.core import ParameterSource
from pydantic import ValidationError
from rich.console import Console

from coderig.cli_types import DURATION, DURATION_OFF_IS_ZERO, DURATION_OR_OFF
from coderig.serve.assembly import build_gateway
from coderig.serve.fleet_options import fleet_options
from coderig.serve.settings import ConfigError, ServeSettings, describe_validation_error

log = logging.getLogger("coderig.serve")


def _print_data_file_option(flag: str, name: str, help: str):
    """An eager flag that prints one of the gateway's data files and exits."""

    def callback(ctx: click.Context, _: click.Parameter, value: bool) -> None:
        if not value or ctx.resilient_parsing:
            return
        from importlib.resources import files

        click.echo(files("coderig.serve").joinpath("data", name).read_text(), nl=False)
        ctx.exit()

    return click.option(
        flag, is_flag=True, expose_value=False, is_eager=True, callback=callback, help=help
    )


@click.command()
@_print_data_file_option(
    "--print-dashboard",
    "grafana-dashboard.json",
    "Print the Grafana dashboard (JSON, import it in Grafana) for these metrics and exit.",
)
@_print_data_file_option(
    "--print-scrape-config",
    "prometheus.yaml",
    "Print a Prometheus scrape config for the gateway's /metrics and exit.",
)
@click.option(
    "--model",
    "-m",
    default=None,
    help="A .gguf path or a Hugging Face id (org/name[:file.gguf]). "
    "Default: the embedded SmolLM2-135M-Instruct.",
)
@click.option("--served-model-name", default=None, help='The name clients send as "model".')
@click.option(
    "--replicas",
    "-r",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Engine processes to run.",
)
@click.option(
    "--threads-per-replica",
    type=click.IntRange(1, 512),
    default=None,
    help="CPU threads per llama.cpp replica. Default: cores / replicas.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", "-p", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--max-model-len",
    default=4096,
    show_default=True,
    type=click.IntRange(16),
    help="Prompt + completion tokens allowed.",
)
@click.option(
    "--max-tokens-limit",
    default=2048,
    show_default=True,
    type=click.IntRange(1),
    help="Largest max_tokens a request may ask for.",
)
@click.option(
    "--fim-template",
    default=None,
    help="Force a FIM family (qwen, starcoder, codellama, deepseek, codegemma, codestral) "
    "or 'none'. Default: detect from the vocabulary.",
)
@click.option("--max-body-size", default="2MiB", show_default=True, help="Largest request body.")
@click.option(
    "--stall-timeout",
    type=DURATION,
    default="120s",
    show_default=True,
    help="Fail a request whose replica produces nothing for this long.",
)
@click.option(
    "--startup-timeout",
    type=DURATION,
    default="300s",
    show_default=True,
    help="How long a replica may take to become healthy.",
)
@click.option(
    "--health-check",
    default="2s,3s,3",
    show_default=True,
    help="INTERVAL,TIMEOUT,FAILURES: a replica failing FAILURES checks in a row (hung, "
    "SIGSTOPped) is killed and restarted, and its requests get 503.",
)
@click.option(
    "--log-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Where replica logs go. Default: a new temporary directory.",
)
@click.option(
    "--llama-server",
    "llama_server",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    envvar="CODERIG_LLAMA_SERVER",
    help="The llama-server binary to run. Default: coderig's own build (made once, cached), "
    "else a llama-server on PATH; see `coderig engine info`.",
)
@click.option(
    "--slots",
    type=click.IntRange(1, 256),
    default=4,
    show_default=True,
    help="Requests each llama.cpp replica runs at once (continuous batching); more wait in "
    "the gateway's queue.",
)
@click.option(
    "--prompt-cache",
    default="256MiB",
    show_default=True,
    help="RAM per llama.cpp replica for prompts that left their slot (llama-server's "
    "--cache-ram), so a replica reuses many developers' prompts, not only its slots' last "
    "ones. 0: slots only.",
)
@click.option(
    "--cache-reuse",
    type=click.IntRange(0),
    default=256,
    show_default=True,
    help="Reuse cached chunks of at least this many tokens after the prompt window moved "
    "(llama-server's --cache-reuse; 0 = off).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1),
    default=512,
    show_default=True,
    help="Tokens per llama.cpp forward pass: the prefill chunk that running decodes wait for.",
)
@click.option(
    "--llama-server-arg",
    "llama_server_args",
    multiple=True,
    help="One more argument for llama-server, verbatim (repeatable), e.g. "
    "--llama-server-arg=--spec-type --llama-server-arg=ngram-simple.",
)
@click.option(
    "--max-header-size",
    default="64KiB",
    show_default=True,
    help="Largest request line + headers (431 beyond).",
)
@click.option(
    "--header-timeout",
    type=DURATION,
    default="10s",
    show_default=True,
    help="Time a client has to send a request's head (slowloris guard; 408 beyond).",
)
@click.option(
    "--body-timeout",
    type=DURATION,
    default="30s",
    show_default=True,
    help="Time a client has to send a request's body (408 beyond).",
)
@click.option(
    "--max-connections",
    type=click.IntRange(1),
    default=None,
    help="Concurrent connections before new ones get 503 (default: no limit but file "
    "descriptors; idle keep-alive connections close after 30s).",
)
@click.option(
    "--routing",
    type=click.Choice(["prefix", "least-busy"]),
    default="prefix",
    show_default=True,
    help="prefix: send a request to the replica that holds its prompt prefix (or its user's "
    "session) unless that replica is busier than the others; least-busy: fewest in flight.",
)
@click.option(
    "--max-queue",
    type=click.IntRange(0),
    default=32,
    show_default=True,
    help="Requests that may wait for each replica; more are refused with 429.",
)
@click.option(
    "--max-queue-wait",
    type=DURATION_OR_OFF,
    default="1s",
    show_default=True,
    help="Refuse (429 + Retry-After) a request that would wait longer than this for a "
    "replica, estimated from recent service times; 'off' to queue up to --max-queue.",
)
@click.option(
    "--api-keys",
    "api_keys_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="File of API keys, one per line ('key' or 'name:key'); re-read when it changes. "
    "Also: CODERIG_API_KEYS=name:key,... Without keys the API is open.",
)
@click.option(
    "--pin-slots/--engine-picks-slots",
    default=False,
    show_default=True,
    help="llama.cpp: run each request in the slot the gateway last saw its prefix in "
    "(id_slot), rather than letting llama-server pick the idle slot whose prompt shares the "
    "most with it (measured better for a typing team: BENCHMARKS.md).",
)
@click.option(
    "--cold-hold",
    type=DURATION_OFF_IS_ZERO,
    default=None,
    help="A request whose prompt is mostly not cached on its replica (see --cold-prompt-tokens) "
    "waits up to this long for the replica to finish what it runs: on a CPU its prefill would "
    "stall their decoding (measured on a typing team: BENCHMARKS.md). 'off': never waits. "
    "[default: 1s for llama.cpp replicas, off for vLLM and --upstream servers] Needs prefix "
    "routing, which knows what each replica holds.",
)
@click.option(
    "--cold-prompt-tokens",
    type=click.IntRange(min=0),
    default=64,
    show_default=True,
    help="Prompt tokens not found cached on the replica above which a request is cold "
    "(--cold-hold).",
)
@click.option(
    "--fair-queuing/--fifo-queuing",
    default=True,
    show_default=True,
    help="Waiting requests get a busy replica's slots round-robin across developers (API key, "
    "else user or X-Coderig-Session, else address), not first come first served.",
)
@click.option(
    "--share-slots/--no-share-slots",
    default=True,
    show_default=True,
    help="While several developers have sent requests in the last 30s, each runs at most "
    "ceil(slots / developers) of a replica's slots, even if one stays idle for the next "
    "developer (a single client keeps them all). Needs fair queuing.",
)
@click.option(
    "--admin-keys",
    "admin_keys_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="File of admin keys, same forms as --api-keys: they may also call the admin routes "
    "(adapter load/unload), which exist only when an admin key is set. Also: "
    "CODERIG_ADMIN_KEYS=name:key,...",
)
@click.option(
    "--rate-limit-per-key",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Requests/s each key may send on average (429 with Retry-After beyond it).",
)
@click.option(
    "--tokens-per-minute-per-key",
    type=click.IntRange(1),
    default=None,
    help="Tokens (prompt + completion) each key may use per minute; 429 with Retry-After "
    "beyond it. A key's own limit: 'name:key tpm=N' in the keys file (0 = unlimited).",
)
@click.option(
    "--protect-metrics/--open-metrics",
    default=False,
    show_default=True,
    help="Require an API key for /metrics too.",
)
@click.option(
    "--editor-time-budget",
    type=DURATION,
    default=None,
    help="Editor APIs (Tabby, /infill, Ollama): stop generating this long after the first "
    "token, once a line is complete, when the request sets no t_max_predict_ms (e.g. 1500ms).",
)
@click.option(
    "--stable-window-lines",
    default=16,
    show_default=True,
    type=click.IntRange(min=0),
    help="Editor APIs: start the code window at an anchor line within its first N lines, so "
    "a developer's consecutive prompts share their beginning and the engine's prefix cache "
    "skips re-reading it. 0 = send the window as it came.",
)
@click.option(
    "--stable-window-anchor",
    type=click.Choice(["developer", "content"]),
    default="developer",
    show_default=True,
    help="developer: keep each developer's anchor line while it is within reach, and take a "
    "new one as deep as allowed; content: pick it by content alone (the same for every "
    "developer and gateway, but it moves about every blank line).",
)
@click.option(
    "--stable-window-max-drop",
    type=click.FloatRange(0, 0.75, min_open=True),
    default=0.5,
    show_default=True,
    help="Editor APIs: never drop more than this share of the window's lines. More lets an "
    "anchor last longer (fewer prompts re-read whole) at the cost of context.",
)
@click.option(
    "--supersede/--no-supersede",
    default=True,
    show_default=True,
    help="Editor APIs: a developer's new request replaces their older one about the same code "
    "still queued or running (answered 409 superseded); it would never be shown.",
)
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)
@click.option(
    "--access-log/--no-access-log",
    default=True,
    show_default=True,
    help="One line per HTTP request (never bodies).",
)
@fleet_options
def serve(**options) -> None:
    """Serve a code-completion model behind an OpenAI-compatible gateway."""
    ctx = click.get_current_context()
    # vLLM runs one replica per GPU group unless --replicas was given.
    options["replicas_auto"] = ctx.get_parameter_source("replicas") == ParameterSource.DEFAULT
    try:
        settings = ServeSettings(**options)
    except ValidationError as exc:
        raise click.UsageError(describe_validation_error(exc, flag_names(ctx.command))) from exc
    logging.basicConfig(level=settings.log_level.upper(), format="%(levelname)s:     %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per health check otherwise
    run_gateway(settings, Console(stderr=True))


def flag_names(command: click.Command) -> dict[str, str]:
    """Option name -> the flag a user types (``loras`` -> ``--lora``), for error messages."""
    return {
        param.name: max(param.opts, key=len)
        for param in command.params
        if isinstance(param, click.Option) and param.name
    }


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted sockets whose proto
    # says TCP; with proto 0, Nagle held every response's second write until the client's
    # delayed ACK, 40 ms later (benchmarks/gateway_overhead.py caught it).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.set_inheritable(True)
    return sock


def raise_fd_limit() -> None:
    """Let idle keep-alive connections use descriptors up to the hard limit, not the soft one."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def is_public(host: str) -> bool:
    if host in ("localhost", ""):
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


def run_gateway(settings: ServeSettings, console: Console) -> None:
    """Start replicas, then serve HTTP on a socket bound before anything else was spent."""
    import asyncio

    import uvicorn

    from coderig.serve.app import create_app
    from coderig.serve.pool import ReplicaStartError
    from coderig.serve.protocol import guarded_protocol

    sock = bind_socket(settings.host, settings.port)
    host, port = sock.getsockname()[:2]
    try:
        gateway = build_gateway(settings, console)
    except ConfigError as exc:
        sock.close()
        raise click.ClickException(str(exc)) from exc
    started = time.monotonic()
    status = console.status(f"starting {settings.replicas} replica(s)...")

    def on_change(replica) -> None:
        ready = sum(1 for r in gateway.pool.replicas if r.state == "ready")
        status.update(f"replicas ready: {ready}/{len(gateway.pool.replicas)}")
        if replica.state == "ready" and not gateway_started:
            console.print(
                f"  {replica.name} ready (pid {replica.pid}) "
                f"after {time.monotonic() - started:.1f}s"
            )

    gateway_started = False
    gateway.on_replica_change.append(on_change)
    app = create_app(gateway, manage_lifecycle=False)
    raise_fd_limit()
    config = uvicorn.Config(
        app,
        log_level=settings.log_level,
        access_log=settings.access_log,
        timeout_keep_alive=30,
        lifespan="on",
        http=guarded_protocol(settings.max_head_bytes, settings.head_timeout),
        limit_concurrency=settings.max_connections,
    )
    server = uvicorn.Server(config)

    async def main() -> int:
        nonlocal gateway_started
        try:
            with status:
                await gateway.start()
        except ReplicaStartError as exc:
            console.print(f"[red]error:[/] {exc}", highlight=False)
            await gateway.stop()
            return 1
        except BaseException:
            await gateway.stop()
            raise
        gateway_started = True
        print_banner(console, gateway.model_name, host, port, settings, gateway.auth.enabled)
        try:
            await server.serve(sockets=[sock])
        finally:
            await gateway.stop()
        return 0

    try:
        code = asyncio.run(main())
    except KeyboardInterrupt:
        code = 0
    sys.exit(code)


def print_banner(
    console: Console, model: str, host: str, port: int, settings: ServeSettings, keys: bool
) -> None:
    shown = f"[{host}]" if ":" in host else host
    base = f"http://{shown}:{port}"
    body = json.dumps({"model": model, "prompt": "def fibonacci(n):", "max_tokens": 32})
    console.print(f"\n[bold green]coderig is serving[/] [cyan]{model}[/] at [bold]{base}/v1[/]")
    console.print("Try it:")
    auth = ' -H "Authorization: Bearer $CODERIG_API_KEY"' if keys else ""
    console.print(
        f"  curl {base}/v1/completions -H 'Content-Type: application/json'{auth} -d '{body}'",
        soft_wrap=True,
        highlight=False,
        markup=False,
    )
    console.print(f"Metrics: {base}/metrics   Ready: {base}/ready   API docs: {base}/docs\n")
    if (
        is_public(settings.host)
        and settings.api_keys_file is None
        and not os.environ.get("CODERIG_API_KEYS")
    ):
        console.print(
            f"[yellow]warning:[/] listening on {settings.host} without API keys: anyone who can "
            "reach this port can use the model"
        )
