"""The gateway: an OpenAI-compatible FastAPI app in front of the replica pool."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from coderig import __version__
from coderig.serve import lora_admin
from coderig.serve.auth import (
    ADMIN_ENV_VAR,
    Authenticator,
    KeyStore,
    RateLimiter,
    require_key,
)
from coderig.serve.editors.infill import InfillAPI
from coderig.serve.editors.ollama import OllamaAPI
from coderig.serve.editors.tabby import TabbyAPI
from coderig.serve.engine_metrics import EngineMetrics
from coderig.serve.errors import OpenAIError, install_error_handlers
from coderig.serve.fim import FimTemplate
from coderig.serve.generate import Admission, GenerationRequest, Generator
from coderig.serve.limits import BodySizeLimit
from coderig.serve.metrics import GatewayMetrics
from coderig.serve.openai_api import ERROR_RESPONSES, openai_router
from coderig.serve.openapi import install_openapi
from coderig.serve.pool import Replica, ReplicaPool, ReplicaState
from coderig.serve.prompts import PromptBuilder, RenderedPrompt
from coderig.serve.request_metrics import RequestCounter
from coderig.serve.routing import Router
from coderig.serve.settings import ServeSettings
from coderig.serve.tokenizer import Tokenizer

log = logging.getLogger("coderig.serve")


@dataclass
class Gateway:
    """Everything a request handler needs, built once by ``coderig serve``."""

    settings: ServeSettings
    model_name: str
    tokenizer: Tokenizer
    fim_template: FimTemplate | None
    pool: ReplicaPool
    metrics: GatewayMetrics = field(default_factory=GatewayMetrics)
    auth: Authenticator | None = None
    on_replica_change: list[Callable[[Replica], None]] = field(default_factory=list)
    # fleet: LoRA adapters served beside the base model (name -> where it comes from), and the
    # scale-to-zero controller (coderig.serve.idle), when enabled.
    adapters: dict[str, str] = field(default_factory=dict)
    idle: Any = None

    def __post_init__(self) -> None:
        if self.auth is None:
            self.auth = Authenticator(
                KeyStore.from_sources(self.settings.api_keys_file),
                RateLimiter(self.settings.rate_limit_per_key)
                if self.settings.rate_limit_per_key
                else None,
                admin_keys=KeyStore.from_sources(
                    self.settings.admin_keys_file, env_var=ADMIN_ENV_VAR
                ),
                tokens_per_minute=self.settings.tokens_per_minute_per_key,
            )
        self.prompts = PromptBuilder(
            self.tokenizer,
            self.fim_template,
            max_model_len=self.settings.max_model_len,
            max_tokens_limit=self.settings.max_tokens_limit,
        )
        self.generator = Generator(
            self.pool,
            self.metrics,
            lambda text: len(self.tokenizer.encode(text, special=False)),
            stall_timeout=self.settings.stall_timeout,
            router=Router(self.pool, self.settings.routing),
            admission=Admission(self.settings.max_queue, self.settings.max_queue_wait),
            fair_queuing=self.settings.fair_queuing,
            pin_slots=self.settings.pin_slots,
            supersede=self.settings.supersede,
            share_slots=self.settings.share_slots,
            cold_hold=(
                self.pool.engine.cold_hold
                if self.settings.cold_hold is None
                else self.settings.cold_hold
            ),
            cold_prompt_tokens=self.settings.cold_prompt_tokens,
        )
        self.generator.on_tokens = self._count_key_tokens
        self.engine_metrics = EngineMetrics(self.pool)
        self.metrics.registry.register(self.engine_metrics)
        self.created = int(time.time())
        self._watch_replicas()

    def _count_key_tokens(self, request, tokens: int) -> None:
        if request.key is not None:
            self.metrics.key_tokens.labels(request.key).inc(tokens)
            self.auth.budget.charge(request.key, tokens)

    def _watch_replicas(self) -> None:
        for replica in self.pool.replicas:
            label = replica.name
            self.metrics.in_flight.labels(label).set_function(lambda r=replica: r.in_flight)
            self.metrics.queued.labels(label).set_function(lambda r=replica: r.queued)
            self.metrics.replica_up.labels(label).set_function(
                lambda r=replica: 1.0 if r.state == ReplicaState.READY else 0.0
            )

        def on_change(replica: Replica) -> None:
            if replica.state == ReplicaState.RESTARTING:
                self.metrics.replica_restarts.labels(replica.name).inc()
            for listener in self.on_replica_change:
                listener(replica)

        self.pool.listeners.append(on_change)

    async def start(self) -> None:
        await self.pool.start()
        if self.idle is not None:
            self.idle.start()

    async def stop(self) -> None:
        if self.idle is not None:
            await self.idle.stop()
        await self.pool.stop()
        await self.generator.aclose()
        await self.engine_metrics.aclose()

    def check_model(self, requested: str | None) -> None:
        if requested is not None and requested not in (self.model_name, *self.adapters):
            served = ", ".join(f"`{m}`" for m in [self.model_name, *self.adapters])
            raise OpenAIError(
                404,
                f"The model `{requested}` does not exist. This server serves {served}.",
                param="model",
                code="model_not_found",
            )

    def sampling(self, body) -> dict:
        """Sampling fields passed through to the engine, only those the client set."""
        fields = ("temperature", "top_p", "top_k", "presence_penalty", "frequency_penalty", "seed")
        sampling = {name: getattr(body, name) for name in fields if getattr(body, name) is not None}
        sampling.setdefault("temperature", 1.0)  # OpenAI's default, not llama.cpp's 0.8
        return sampling

    def generation_request(
        self,
        route: str,
        body,
        rendered: RenderedPrompt,
        requested_max: int | None,
        default_max,
        session: str | None = None,
    ) -> GenerationRequest:
        max_tokens = self.prompts.max_tokens(requested_max, rendered.tokens, default_max)
        sampling = self.sampling(body)
        min_tokens = max_tokens if body.ignore_eos else body.min_tokens
        if min_tokens:
            sampling["min_tokens"] = min(min_tokens, max_tokens)
        stop = list(rendered.stop) + list(body.stop or [])
        return GenerationRequest(
            route=route,
            prompt=rendered.text,
            prompt_tokens=rendered.tokens,
            max_tokens=max_tokens,
            sampling=sampling,
            stop=stop,
            user=body.user,
            session=session or body.user,
            model=body.model or self.model_name,
        )


def create_app(gateway: Gateway, *, manage_lifecycle: bool = True) -> FastAPI:
    """The FastAPI app; with ``manage_lifecycle`` its lifespan starts and stops the replicas."""

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        if not manage_lifecycle:
            yield
            return
        await gateway.start()
        try:
            yield
        finally:
            await gateway.stop()

    app = FastAPI(
        title="coderig",
        version=__version__,
        description="OpenAI-compatible code-completion gateway.",
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    install_error_handlers(app)
    install_openapi(
        app,
        max_tokens_limit=gateway.settings.max_tokens_limit,
        fim=gateway.fim_template is not None,
    )
    # Counts every API request when its response is over, whatever path it took.
    app.add_middleware(RequestCounter, metrics=gateway.metrics)
    app.add_middleware(
        BodySizeLimit,
        max_bytes=gateway.settings.max_body_bytes,
        read_timeout=gateway.settings.body_read_timeout,
    )

    @app.get("/health", tags=["ops"])
    async def health() -> dict:
        """Liveness: the gateway process answers."""
        return {"status": "ok"}

    @app.get("/ready", tags=["ops"], responses={503: {"description": "No replica is ready"}})
    async def ready() -> JSONResponse:
        """Readiness: at least one replica can take requests."""
        replicas = [r.snapshot() for r in gateway.pool.replicas]
        ok = any(r.state == ReplicaState.READY for r in gateway.pool.replicas)
        body: dict[str, Any] = {"ready": ok, "replicas": replicas}
        if gateway.pool.running_replicas is not None:  # Ray Serve: the engines it runs now
            body["running_replicas"] = gateway.pool.running_replicas
        if gateway.idle is not None:  # scaled to zero is ready: the next request cold-starts
            body["state"] = gateway.idle.state
            ok = body["ready"] = ok or gateway.idle.serves_when_cold
        return JSONResponse(body, status_code=200 if ok else 503)

    metrics_guard = [Depends(require_key)] if gateway.settings.protect_metrics else []

    @app.get("/metrics", tags=["ops"], response_class=Response, dependencies=metrics_guard)
    async def metrics() -> Response:
        """Prometheus text exposition: the gateway's metrics, and each replica's engine metrics
        (``llamacpp:*``, ``vllm:*``) with a ``replica`` label."""
        await gateway.engine_metrics.refresh()
        return Response(generate_latest(gateway.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    tabby = TabbyAPI(gateway)
    # POST /v1/completions with Tabby's `segments` is handed to Tabby's handler.
    app.include_router(openai_router(gateway, tabby.dispatch_route_class()))
    app.include_router(tabby.router)
    app.include_router(InfillAPI(gateway).router)
    app.include_router(OllamaAPI(gateway).router)
    # Admin routes (/v1/load_lora_adapter, /v1/unload_lora_adapter) exist only when an admin
    # key is configured; documented only where the engine can load adapters at run time (vLLM,
    # an external server); elsewhere they answer 501 with the reason.
    if gateway.auth.has_admin:
        runtime_lora = gateway.pool.engine.runtime_lora
        app.include_router(
            lora_admin.router, responses=ERROR_RESPONSES, include_in_schema=runtime_lora
        )
    return app
