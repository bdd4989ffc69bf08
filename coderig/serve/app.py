"""The gateway: an OpenAI-compatible FastAPI app in front of the replica pool."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from coderig import __version__
from coderig.serve import lora_admin
from coderig.serve.auth import (
    ADMIN_ENV_VAR,
    SESSION_HEADER,
    Authenticator,
    KeyStore,
    RateLimiter,
    require_key,
)
from coderig.serve.disconnect import ClientGone, unless_client_leaves, whole_text
from coderig.serve.editors.infill import InfillAPI
from coderig.serve.editors.ollama import OllamaAPI
from coderig.serve.editors.openai import openai_editor_rules
from coderig.serve.editors.tabby import TabbyAPI
from coderig.serve.engine_metrics import EngineMetrics
from coderig.serve.errors import OpenAIError, install_error_handlers
from coderig.serve.fim import FIM_HEADER, FimTemplate
from coderig.serve.generate import Admission, Delta, Finished, GenerationRequest, Generator
from coderig.serve.limits import BodySizeLimit
from coderig.serve.metrics import GatewayMetrics
from coderig.serve.openapi import install_openapi
from coderig.serve.pool import Replica, ReplicaPool, ReplicaState
from coderig.serve.postprocess import apply_editor_rules
from coderig.serve.prompts import PromptBuilder, RenderedPrompt
from coderig.serve.routing import Router
from coderig.serve.schemas import (
    ChatCompletionRequest,
    ChatCompletionResponse,
    CompletionRequest,
    CompletionResponse,
    ErrorResponse,
    ModelList,
)
from coderig.serve.settings import ServeSettings
from coderig.serve.tokenizer import Tokenizer

log = logging.getLogger("coderig.serve")


ERROR_RESPONSES = {
    400: {"model": ErrorResponse, "description": "Invalid request"},
    401: {"model": ErrorResponse, "description": "Missing or wrong API key"},
    429: {"model": ErrorResponse, "description": "Rate limited or overloaded; see Retry-After"},
    404: {"model": ErrorResponse, "description": "Unknown model"},
    413: {"model": ErrorResponse, "description": "Body too large"},
    503: {"model": ErrorResponse, "description": "No replica available; retry"},
}


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
    v1 = APIRouter(dependencies=[Depends(require_key)], route_class=tabby.dispatch_route_class())

    @v1.get("/v1/models", response_model=ModelList, tags=["openai"])
    async def models() -> dict:
        return {
            "object": "list",
            "data": [
                {
                    "id": gateway.model_name,
                    "object": "model",
                    "created": gateway.created,
                    "owned_by": "coderig",
                    "max_model_len": gateway.settings.max_model_len,
                    "fim_template": gateway.fim_template.id if gateway.fim_template else None,
                },
                *(
                    {
                        "id": name,
                        "object": "model",
                        "created": gateway.created,
                        "owned_by": "coderig",
                        "root": source,
                        "parent": gateway.model_name,
                        "max_model_len": gateway.settings.max_model_len,
                        "fim_template": gateway.fim_template.id if gateway.fim_template else None,
                    }
                    for name, source in gateway.adapters.items()
                ),
            ],
        }

    @v1.post(
        "/v1/completions",
        tags=["openai"],
        responses={200: {"model": CompletionResponse}, **ERROR_RESPONSES},
    )
    async def completions(body: CompletionRequest, request: Request) -> Response:
        gateway.check_model(body.model)
        rendered = gateway.prompts.completion(body.prompt, body.suffix)  # type: ignore[arg-type]
        gen = gateway.generation_request(
            "completions",
            body,
            rendered,
            body.max_tokens,
            gateway.settings.default_max_tokens,
            session=request.headers.get(SESSION_HEADER),
        )
        headers = {FIM_HEADER: rendered.fim} if rendered.fim else {}
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        rules = openai_editor_rules(body, gateway.settings)
        events = (
            apply_editor_rules(
                gateway.generator.run(gen),
                gen,
                rules,
                metrics=gateway.metrics,
                count_tokens=gateway.generator.count_tokens,
            )
            if rules
            else None
        )
        return await respond(
            request,
            gateway,
            gen,
            CompletionFormat(gen.model or gateway.model_name),
            body.stream,
            include_usage,
            headers,
            events,
        )

    @v1.post(
        "/v1/chat/completions",
        tags=["openai"],
        responses={200: {"model": ChatCompletionResponse}, **ERROR_RESPONSES},
    )
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
        gateway.check_model(body.model)
        rendered = gateway.prompts.chat(body.messages)
        requested = body.max_completion_tokens or body.max_tokens
        if body.max_completion_tokens and body.max_tokens:
            # Both given: the newer field wins, but neither may break the server's limit.
            gateway.prompts.max_tokens(body.max_tokens, 0, None)
        gen = gateway.generation_request(
            "chat", body, rendered, requested, None, session=request.headers.get(SESSION_HEADER)
        )
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return await respond(
            request,
            gateway,
            gen,
            ChatFormat(gen.model or gateway.model_name),
            body.stream,
            include_usage,
            {},
        )

    app.include_router(v1)
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


# --- response shaping ------------------------------------------------------------------


class CompletionFormat:
    object = "text_completion"

    def __init__(self, model: str) -> None:
        self.model = model

    def chunk(self, gen: GenerationRequest, text: str, finish_reason: str | None) -> dict:
        return {
            "id": f"cmpl-{gen.id}",
            "object": self.object,
            "created": gen.created,
            "model": self.model,
            "choices": [
                {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}
            ],
        }

    def first_chunk(self, gen: GenerationRequest) -> dict | None:
        return None

    def usage_chunk(self, gen: GenerationRequest, usage: dict) -> dict:
        return {
            "id": f"cmpl-{gen.id}",
            "object": self.object,
            "created": gen.created,
            "model": self.model,
            "choices": [],
            "usage": usage,
        }

    def whole(self, gen: GenerationRequest, text: str, done: Finished) -> dict:
        body = self.chunk(gen, text, done.finish_reason)
        body["usage"] = done.usage()
        return body


class ChatFormat(CompletionFormat):
    object = "chat.completion.chunk"

    def chunk(self, gen: GenerationRequest, text: str, finish_reason: str | None) -> dict:
        delta = {"content": text} if text or finish_reason is None else {}
        return {
            "id": f"chatcmpl-{gen.id}",
            "object": self.object,
            "created": gen.created,
            "model": self.model,
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }

    def first_chunk(self, gen: GenerationRequest) -> dict | None:
        chunk = self.chunk(gen, "", None)
        chunk["choices"][0]["delta"] = {"role": "assistant", "content": ""}
        return chunk

    def usage_chunk(self, gen: GenerationRequest, usage: dict) -> dict:
        body = super().usage_chunk(gen, usage)
        body["id"] = f"chatcmpl-{gen.id}"
        return body

    def whole(self, gen: GenerationRequest, text: str, done: Finished) -> dict:
        return {
            "id": f"chatcmpl-{gen.id}",
            "object": "chat.completion",
            "created": gen.created,
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "logprobs": None,
                    "finish_reason": done.finish_reason,
                }
            ],
            "usage": done.usage(),
        }


async def respond(
    request: Request,
    gateway: Gateway,
    gen: GenerationRequest,
    fmt: CompletionFormat,
    stream: bool,
    include_usage: bool,
    headers: dict[str, str],
    events: AsyncIterator | None = None,
) -> Response:
    events = events if events is not None else gateway.generator.run(gen)
    metrics = gateway.metrics
    if not stream:
        return await _whole_response(request, events, gen, fmt, metrics, headers)
    # Pull the first event before answering, so a request that cannot start gets a real
    # status code (503, 429...) instead of a 200 stream carrying an error; meanwhile watch the
    # client, so one that leaves while queued frees its place at once.
    try:
        first = await unless_client_leaves(request, anext(events))
    except ClientGone:
        metrics.requests.labels(gen.route, "499").inc()
        return Response(status_code=499)
    except OpenAIError as exc:
        metrics.requests.labels(gen.route, str(exc.status)).inc()
        raise
    return StreamingResponse(
        _sse(first, events, gen, fmt, metrics, include_usage),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **headers},
    )


async def _whole_response(request, events, gen, fmt, metrics, headers) -> Response:
    try:
        text, done = await unless_client_leaves(request, whole_text(events))
    except ClientGone:
        # The client hung up: generation stopped (closing the upstream stream stops the engine).
        metrics.requests.labels(gen.route, "499").inc()
        return Response(status_code=499)
    except OpenAIError as exc:
        metrics.requests.labels(gen.route, str(exc.status)).inc()
        raise
    metrics.requests.labels(gen.route, "200").inc()
    return JSONResponse(fmt.whole(gen, text, done), headers=headers)


async def _sse(
    first, events: AsyncIterator, gen, fmt: CompletionFormat, metrics, include_usage: bool
) -> AsyncIterator[bytes]:
    status = "200"
    try:
        opening = fmt.first_chunk(gen)
        if opening is not None:
            yield _data(opening)
        event = first
        while True:
            if isinstance(event, Delta):
                yield _data(fmt.chunk(gen, event.text, None))
            else:
                yield _data(fmt.chunk(gen, "", event.finish_reason))
                if include_usage:
                    yield _data(fmt.usage_chunk(gen, event.usage()))
                break
            event = await anext(events)
    except OpenAIError as exc:
        # Headers are gone; report in-band as vLLM and OpenAI do, then end the stream.
        status = str(exc.status)
        yield _data(exc.body())
    except asyncio.CancelledError:
        status = "499"
        raise
    finally:
        metrics.requests.labels(gen.route, status).inc()
        await events.aclose()
    yield b"data: [DONE]\n\n"


def _data(obj: dict) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"
