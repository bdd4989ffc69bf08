"""coderig as a Ray Serve application: the same gateway, with replicas that Ray places,
restarts and autoscales across a cluster.

Two deployments:

* ``CoderigReplica`` — one engine replica: it runs the very process ``coderig serve`` would
  (llama.cpp's ``llama-server``, or ``vllm serve`` on a GPU node) on a
  private localhost port of its node, and streams completion chunks back through Ray. Ray
  autoscales it on requests in flight (``target_ongoing_requests``), down to ``min_replicas: 0``
  after ``downscale_delay_s`` without traffic; the next request waits for a replica to start.
  Its ``check_health`` fails when the engine process is gone, so Ray replaces the replica.
* ``CoderigGateway`` — the ingress: coderig's own FastAPI app (``create_app``: the same OpenAI
  routes, errors, FIM, API keys, metrics), over a pool of one pseudo-replica whose "stream"
  goes through a Ray deployment handle instead of HTTP. Routing between engine replicas is
  Ray's (power of two choices on queue length).

``build_app(args)`` is the Serve application builder, so the same thing runs from
``coderig deploy ray``, a Serve config file (``serve deploy``) or a KubeRay ``RayService``
(``import_path: coderig.deploy.ray_app:build_app``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import Counter
from ray import serve
from ray.serve.handle import DeploymentHandle

from coderig.deploy.ray_app_config import (
    GATEWAY_DEPLOYMENT,
    REPLICA_DEPLOYMENT,
    RayAppConfig,
)
from coderig.engines.base import (
    Dialect,
    Engine,
    Launch,
    bearer_headers,
    new_replica_secret,
    replica_environment,
)
from coderig.serve.pool import (
    Replica,
    ReplicaPool,
    ReplicaState,
    _die_with_parent,
    describe_exit,
    free_port,
)
from coderig.serve.upstream import (
    UpstreamFailure,
    UpstreamRejected,
    UpstreamUnreachable,
    stream_completion,
)

log = logging.getLogger("coderig.deploy")

# A request that reached no engine (connection refused) is sent again, through Ray's router, at
# most this many more times before the client sees the 503.
UNREACHABLE_RETRIES = 2

# --- the engine replica -------------------------------------------------------------------


def replica_engine(config: RayAppConfig) -> Engine:
    """The same engine ``coderig serve`` would run, for this node."""
    from coderig.models import resolve_model

    resolved = resolve_model(config.model, name=config.served_model_name)
    if config.engine == "vllm":
        from coderig.engines.vllm import VllmEngine, VllmOptions, vllm_command

        options = VllmOptions(max_model_len=config.max_model_len, **config.vllm)
        # Ray sets CUDA_VISIBLE_DEVICES for the actor's GPUs: no gpu_ids of our own.
        return VllmEngine(
            str(resolved.path), resolved.name, options, command=vllm_command() or ["vllm", "serve"]
        )
    from coderig.engines.llamacpp import LlamaServerEngine
    from coderig.engines.llamacpp_build import ensure_llama_server

    # Ray routes to a replica at most max_ongoing_requests at once: one slot each.
    return LlamaServerEngine(
        ensure_llama_server(config.llama_server).path,
        resolved.path,
        threads=config.threads_per_replica,
        n_ctx=config.max_model_len,
        slots=config.max_ongoing_requests,
    )


class CoderigReplica:
    """One engine process on this Ray node, streamed through Ray."""

    async def __init__(self, config: dict[str, Any]) -> None:
        # async: runs on the replica's event-loop thread, which lives as long as the actor —
        # PR_SET_PDEATHSIG fires when the *thread* that started the engine exits.
        self.config = RayAppConfig.from_dict(config)
        port = free_port()
        engine = replica_engine(self.config)
        launch = engine.launch(index=0, port=port)
        assert launch is not None
        secret = new_replica_secret()  # only this actor talks to its engine
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = Path(tempfile.mkdtemp(prefix="coderig-ray-")) / "engine.log"
        with open(self.log_path, "ab") as log_file:
            self.process = subprocess.Popen(
                launch.argv,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=replica_environment(engine, launch, secret),
                preexec_fn=_die_with_parent,  # the engine dies with this actor, even on SIGKILL
            )
        self.client = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=256), headers=bearer_headers(secret)
        )
        self.health_path = engine.health_path
        self.unreachable: str | None = None  # set when a request found the engine unreachable
        await self._wait_healthy(engine.health_path)
        try:
            self.replica_id = serve.get_replica_context().replica_id.unique_id
        except Exception:  # outside Serve (unit use)
            self.replica_id = f"pid-{os.getpid()}"

    async def _wait_healthy(self, path: str) -> None:
        deadline = time.monotonic() + self.config.startup_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(
                    f"engine {describe_exit(self.process.returncode)} before it was ready:\n{tail}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if (await self.client.get(self.url + path, timeout=2)).status_code == 200:
                    return
            await asyncio.sleep(0.2)
        self.process.kill()
        raise RuntimeError(f"engine not healthy after {self.config.startup_timeout_s:.0f}s")

    async def generate(self, payload: dict) -> AsyncIterator[dict]:
        """Completion chunks; engine errors travel as data so their status survives Ray."""
        try:
            async for chunk in stream_completion(
                self.client, self.url, payload, stall_timeout=self.config.stall_timeout_s
            ):
                yield chunk
        except UpstreamRejected as exc:
            yield {"coderig_rejected": {"status": exc.status, "message": exc.message}}
            return
        except UpstreamUnreachable as exc:
            # Nothing reached the engine: the gateway may send this request elsewhere, and the
            # next health check decides whether this replica must be replaced.
            self.unreachable = str(exc)
            yield {"coderig_failure": self._describe(exc), "coderig_unreachable": True}
            return
        except UpstreamFailure as exc:
            yield {"coderig_failure": self._describe(exc)}
            return
        yield {"coderig_replica": self.replica_id, "choices": []}

    def _describe(self, exc: Exception) -> str:
        state = describe_exit(self.process.poll())
        return f"{exc} [replica {self.replica_id}, engine pid {self.process.pid} {state}]"

    async def check_health(self) -> None:
        """Ray calls this every few seconds; raising gets this replica replaced.

        A live process is not enough: an engine that no longer answers on its port would keep
        failing every request Ray routes here (and fail them fast, so it would attract more).
        """
        if self.process.poll() is not None:
            raise RuntimeError(f"engine {describe_exit(self.process.returncode)}")
        try:
            response = await self.client.get(self.url + self.health_path, timeout=10)
        except httpx.HTTPError as exc:
            raise RuntimeError(
                f"engine pid {self.process.pid} does not answer at {self.url} "
                f"({exc.__class__.__name__}); last request failure: {self.unreachable}"
            ) from exc
        if response.status_code != 200:
            raise RuntimeError(f"engine health {self.health_path}: HTTP {response.status_code}")
        self.unreachable = None

    def __del__(self) -> None:
        process = getattr(self, "process", None)
        if process is not None and process.poll() is None:
            process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(5)
            if process.poll() is None:
                process.kill()


# --- the gateway ingress ------------------------------------------------------------------


@dataclass
class RayEngine:
    """The engine as the gateway sees it: Ray queues and routes, the gateway never waits."""

    dialect: Dialect
    name: str = "ray"
    slots: int = 100_000
    health_path: str = "/health"  # never probed: Ray health-checks its replicas itself
    slot_routing: bool = False
    cold_hold: float = 0.0
    per_request_lora: bool = False
    runtime_lora: bool = False
    secret_env: str | None = None  # each Ray replica holds its own engine's secret

    def launch(self, *, index: int, port: int) -> Launch | None:
        return None


class RayPool(ReplicaPool):
    """One pseudo-replica standing for the whole Ray deployment (Ray supervises the real ones).

    It also polls ``serve.status()`` for how many engine replicas are running, so ``/ready`` can
    say so and a request that arrives while there are none is known to be a cold start.
    """

    def __init__(self, engine: RayEngine, app_name: str | None = None) -> None:
        log_dir = Path(tempfile.mkdtemp(prefix="coderig-ray-gateway-"))
        super().__init__(engine, 1, log_dir=log_dir, external_urls=["ray-serve"])
        self.replicas[0].name = "ray-serve"
        self.app_name = app_name
        self.running_replicas: int | None = None
        self._poller: asyncio.Task | None = None

    async def start(self) -> None:
        for replica in self.replicas:
            replica.lost.clear()
            self._set_state(replica, ReplicaState.READY)
        if self.app_name is not None:
            self._poller = asyncio.create_task(self._poll_status(), name="ray-status")

    async def stop(self) -> None:
        self._stopping = True
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        await self._health_client.aclose()

    async def _poll_status(self, interval: float = 1.0) -> None:
        while True:
            with contextlib.suppress(Exception):  # the controller may be busy or restarting
                status = await asyncio.to_thread(serve.status)
                app = status.applications[self.app_name]
                states = app.deployments[REPLICA_DEPLOYMENT].replica_states
                counts = {getattr(k, "value", k): v for k, v in states.items()}
                self.running_replicas = int(counts.get("RUNNING", 0))
            await asyncio.sleep(interval)


class CoderigGateway:
    """coderig's FastAPI gateway, streaming from the ``CoderigReplica`` deployment."""

    def __init__(self, replicas: DeploymentHandle, config: dict[str, Any]) -> None:
        from coderig.serve.app import Gateway
        from coderig.serve.settings import ServeSettings

        self.config = RayAppConfig.from_dict(config)
        self.replicas = replicas.options(stream=True)
        name, tokenizer, fim, dialect = _gateway_model(self.config)
        settings = ServeSettings(
            model=self.config.model,
            served_model_name=self.config.served_model_name,
            engine=self.config.engine,
            max_model_len=self.config.max_model_len,
            max_tokens_limit=self.config.max_tokens_limit,
            fim_template=self.config.fim_template,
            stall_timeout=self.config.stall_timeout_s,
        )
        try:
            app_name = serve.get_replica_context().app_name
        except Exception:  # outside Serve
            app_name = None
        self.pool = RayPool(RayEngine(dialect=dialect), app_name)
        self.gateway = Gateway(settings, name, tokenizer, fim, self.pool)
        self.gateway.generator.stream_from = self._stream_from
        self._cold_start_at: float | None = None
        self.served_by = Counter(
            "coderig_ray_replica_requests",
            "Generations completed, by the Ray Serve replica that ran them.",
            ["replica"],
            registry=self.gateway.metrics.registry,
        )
        self.unreachable_retries = Counter(
            "coderig_ray_unreachable_retries",
            "Requests sent again because the replica Ray picked could not reach its engine.",
            registry=self.gateway.metrics.registry,
        )

    def __serve_build_asgi_app__(self):
        from coderig.serve.app import create_app

        return create_app(self.gateway)

    async def _stream_from(self, replica: Replica, payload: dict) -> AsyncIterator[dict]:
        if self.pool.running_replicas == 0 and self._cold_start_at is None:
            # Scaled to zero: this request waits for Ray to start a replica.
            self._cold_start_at = time.monotonic()
            log.info("cold start (request): no engine replica running; Ray starts one")
        for attempt in range(UNREACHABLE_RETRIES + 1):
            started = False
            try:
                async for chunk in self._stream_once(payload):
                    started = True
                    yield chunk
                return
            except UpstreamUnreachable as exc:
                if started or attempt == UNREACHABLE_RETRIES:
                    raise
                self.unreachable_retries.inc()
                log.warning("no engine reached (%s); sending the request again", exc)

    async def _stream_once(self, payload: dict) -> AsyncIterator[dict]:
        try:
            async for chunk in self.replicas.generate.remote(payload):
                if self._cold_start_at is not None:
                    self._observe_cold_start()
                if "coderig_replica" in chunk:
                    self.served_by.labels(chunk["coderig_replica"]).inc()
                    continue
                if "coderig_rejected" in chunk:
                    info = chunk["coderig_rejected"]
                    raise UpstreamRejected(int(info["status"]), str(info["message"]))
                if "coderig_failure" in chunk:
                    failure = (
                        UpstreamUnreachable
                        if chunk.get("coderig_unreachable")
                        else (UpstreamFailure)
                    )
                    raise failure(str(chunk["coderig_failure"]))
                yield chunk
        except (UpstreamRejected, UpstreamFailure):
            raise
        except Exception as exc:  # the replica actor died, Ray backpressure, ...
            raise UpstreamFailure(f"Ray Serve replica failed ({exc.__class__.__name__})") from exc

    def _observe_cold_start(self) -> None:
        took = time.monotonic() - (self._cold_start_at or time.monotonic())
        self._cold_start_at = None
        self.pool.running_replicas = None  # unknown until the next poll
        metrics = self.gateway.metrics
        metrics.cold_starts.labels("request").inc()
        metrics.cold_start_seconds.observe(took)
        log.info("cold start (request): first token after %.2fs", took)


def _gateway_model(config: RayAppConfig):
    """Served name, tokenizer, FIM template and payload dialect, as ``coderig serve`` picks them."""
    from coderig.models import resolve_model
    from coderig.serve.fim import choose_template

    resolved = resolve_model(config.model, name=config.served_model_name)
    if config.engine == "vllm":
        from coderig.engines.dialect import OpenAIDialect
        from coderig.serve.fleet import special_token_id
        from coderig.serve.remote_tokenizers import HFTokenizer

        tokenizer = HFTokenizer(resolved.path)
        dialect = OpenAIDialect(
            model_for=lambda requested: resolved.name,
            special_token_id=special_token_id(tokenizer),
            native_ignore_eos=True,
        )
    else:
        from coderig.engines.llamacpp import LlamaServerDialect
        from coderig.serve.tokenizer import GGUFTokenizer

        tokenizer = GGUFTokenizer(resolved.path)
        dialect = LlamaServerDialect()
    fim = choose_template(
        model_name=resolved.name,
        is_special_token=tokenizer.is_special_token,
        override=config.fim_template,
    )
    return resolved.name, tokenizer, fim, dialect


def build_app(args: dict[str, Any] | None = None):
    """The Serve application (``import_path: coderig.deploy.ray_app:build_app``)."""
    config = RayAppConfig.from_dict(args)
    replica = serve.deployment(
        CoderigReplica,
        name=REPLICA_DEPLOYMENT,
        autoscaling_config=config.autoscaling_config(),
        max_ongoing_requests=config.max_ongoing_requests,
        ray_actor_options=config.replica_actor_options(),
        health_check_period_s=2,
        health_check_timeout_s=30,
        graceful_shutdown_timeout_s=5,
    )
    gateway = serve.deployment(
        serve.ingress()(CoderigGateway),
        name=GATEWAY_DEPLOYMENT,
        num_replicas=1,
        max_ongoing_requests=1000,
        ray_actor_options={"num_cpus": 0},
    )
    return gateway.bind(replica.bind(config.to_dict()), config.to_dict())
