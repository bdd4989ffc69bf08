"""Run one generation on the pool: pick a replica, wait for a slot, stream tokens back.

Routes (OpenAI completions, chat, and later other API shapes) turn a client request into a
:class:`GenerationRequest`; this module turns that into a stream of :class:`Delta` and one
:class:`Finished`, and records the metrics every route shares. Failures become
:class:`~coderig.serve.errors.OpenAIError` with the status a client can act on: 503 when the
replica died or none is ready (retry), 502 when the engine rejected what we sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import httpx

from coderig.serve.auth import current_caller, current_flow
from coderig.serve.errors import OpenAIError
from coderig.serve.metrics import GatewayMetrics
from coderig.serve.pool import Abandoned, NoReplicaAvailable, Replica, ReplicaLost, ReplicaPool
from coderig.serve.routing import RouteDecision, Router
from coderig.serve.supersede import Supersession
from coderig.serve.upstream import (
    UpstreamFailure,
    UpstreamRejected,
    UpstreamUnreachable,
    stream_completion,
)


def _least_loaded(replicas: list[Replica]) -> Replica:
    return min(replicas, key=lambda r: (r.estimated_wait(), r.in_flight, r.index))


class _ReachedNoEngine(Exception):
    """Nothing reached the replica's engine; ``error`` is what the client gets if no other
    replica can take the request."""

    def __init__(self, error: OpenAIError) -> None:
        super().__init__(error.message)
        self.error = error


@dataclass
class GenerationRequest:
    route: str
    prompt: str
    prompt_tokens: int
    max_tokens: int
    sampling: dict
    stop: list[str] = field(default_factory=list)
    user: str | None = None
    session: str | None = None
    # Why the consumer stopped early, if it does: "client" (disconnect) or a post-processing
    # rule ("stop_rule", "time_budget"); labels the cancellation metrics.
    cancel_reason: str = "client"
    received: float = field(default_factory=time.monotonic)
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:24])
    created: int = field(default_factory=lambda: int(time.time()))
    # The served name asked for (base model or a LoRA adapter); None = the base model.
    model: str | None = None
    # The developer it is queued for, fairly against the others (coderig.serve.fair); by
    # default the caller of the HTTP request being handled.
    flow: str = ""
    # The API key's name it is charged to (token budgets, per-key usage); None when keyless.
    key: str | None = None
    # An editor request: a newer one from the same developer about the same code replaces it
    # (coderig.serve.supersede), which sets ``superseded``.
    supersedable: bool = False
    superseded: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    def __post_init__(self) -> None:
        caller = current_caller.get()
        if not self.flow:
            self.flow = current_flow(self.user) or "internal"
        if self.key is None and caller is not None:
            self.key = caller.key


@dataclass
class Delta:
    text: str


@dataclass
class Finished:
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    #: Prompt tokens the engine found in its cache, as it reported them (vLLM and llama-server
    #: do, in ``usage.prompt_tokens_details``); None when unknown, e.g. a generation the gateway
    #: ended before the engine's last event.
    cached_tokens: int | None = None

    def usage(self) -> dict:
        usage = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }
        if self.cached_tokens is not None:
            usage["prompt_tokens_details"] = {"cached_tokens": self.cached_tokens}
        return usage


Event = Delta | Finished


@dataclass
class Admission:
    """Shed load instead of queueing: a request that would wait longer than ``max_queue_wait``
    seconds for a slot (estimated from the replica's recent service times), or find
    ``max_queue`` requests already waiting, is answered at once with 429 and Retry-After."""

    max_queue: int = 32
    max_queue_wait: float | None = 1.0

    def admits(self, replica: Replica, flow: str | None = None) -> bool:
        """Room in the replica's queue, and a wait (for ``flow``'s turn, with fair queuing)
        within the limit."""
        if replica.queued >= self.max_queue:
            return False
        if self.max_queue_wait is None:
            return True
        return replica.estimated_wait(flow) <= self.max_queue_wait


class Generator:
    """Shared by every route: the pool, the replica HTTP client, the tokenizer, the metrics."""

    def __init__(
        self,
        pool: ReplicaPool,
        metrics: GatewayMetrics,
        count_tokens,
        *,
        stall_timeout: float = 120.0,
        router: Router | None = None,
        admission: Admission | None = None,
        fair_queuing: bool = True,
        pin_slots: bool = False,
        supersede: bool = True,
        share_slots: bool = True,
        cold_hold: float = 0.0,
        cold_prompt_tokens: int = 64,
    ) -> None:
        self.pool = pool
        self.metrics = metrics
        self.count_tokens = count_tokens
        self.stall_timeout = stall_timeout
        self.router = router or Router(pool, "least-busy")
        self.admission = admission or Admission()
        # Round-robin between developers for a busy replica's slots; off: first come first served.
        self.fair_queuing = fair_queuing
        # While several developers are about, each runs at most its share of a replica's slots
        # (coderig.serve.fair), even if one stays idle.
        for replica in pool.replicas:
            replica.capacity.share = share_slots and fair_queuing
        # Name the engine slot a request runs in (llama-server's id_slot) instead of letting the
        # engine pick the idle slot whose prompt shares the most with it. Measured on a typing
        # team (BENCHMARKS.md), the engine's own choice showed 2-12x more suggestions: it sees
        # exact token prefixes, its RAM prompt cache, and which slots are really idle.
        self.pin_slots = pin_slots
        # A prompt mostly not cached on its replica waits (up to cold_hold seconds) for the
        # replica to run nothing: llama-server puts a prefill chunk into the same forward pass
        # as every running decode, so a cold prompt of a few hundred tokens stalls each
        # suggestion in flight for its whole prefill. Measured on a typing team: BENCHMARKS.md.
        self.cold_hold = cold_hold
        self.cold_prompt_tokens = cold_prompt_tokens
        # A developer's newer editor request replaces their older ones (coderig.serve.supersede).
        self.supersession = Supersession() if supersede else None
        # fleet: awaited before routing; scale to zero (coderig.serve.idle) wakes replicas here.
        self.before_route: Callable[[GenerationRequest], Awaitable[None]] | None = None
        # Told the tokens (prompt + completion) each generation used, finished or cancelled:
        # per-key usage and token budgets.
        self.on_tokens: Callable[[GenerationRequest, int], None] | None = None
        self.client = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=1024, max_keepalive_connections=256),
            headers=pool.upstream_headers,
        )

    def _flow(self, request: GenerationRequest) -> str | None:
        """The flow the request is queued (and admitted) in; None: one FIFO queue."""
        return request.flow if self.fair_queuing else None

    @property
    def pinned(self) -> bool:
        """Requests run in the slot the router chose (prefix routing with --pin-slots)."""
        return self.pin_slots and self.router.policy == "prefix"

    async def aclose(self) -> None:
        await self.client.aclose()

    def choose_replica(self, request: GenerationRequest) -> RouteDecision:
        """Route, then admit or shed: never queue a request that would wait too long."""
        try:
            decision = self.router.choose(request.prompt, request.session, model=request.model)
        except NoReplicaAvailable as exc:
            self.metrics.shed.labels("no_replica").inc()
            raise OpenAIError(
                503,
                "no model replica is ready (starting or restarting); retry shortly",
                code="no_replica_available",
                headers={"Retry-After": "1"},
            ) from exc
        flow = self._flow(request)
        if not self.admission.admits(decision.replica, flow):
            ready = self.pool.ready()
            fallback = [r for r in ready if self.admission.admits(r, flow)]
            if not fallback:
                raise self._shed(ready)
            decision = RouteDecision(_least_loaded(fallback), "least-busy")
        self.metrics.routed.labels(decision.reason).inc()
        self.router.record(decision, request.prompt, request.session)
        return decision

    def hold_for(self, decision: RouteDecision, request: GenerationRequest) -> float:
        """Seconds this request may wait for its replica to run nothing (0: none). What is
        cached is the router's knowledge: the longest prefix of the prompt that replica has
        computed, so with least-busy routing nothing is known and nothing is held."""
        if not self.cold_hold or self.router.policy != "prefix":
            return 0.0
        cached_chars = self.router.computed_chars(decision.replica, request.prompt)
        if self.count_tokens(request.prompt[cached_chars:]) <= self.cold_prompt_tokens:
            return 0.0
        self.metrics.cold_held.inc()
        return self.cold_hold

    def _shed(self, ready: list[Replica]) -> OpenAIError:
        full = all(r.queued >= self.admission.max_queue for r in ready)
        reason = "queue_full" if full else "queue_wait"
        self.metrics.shed.labels(reason).inc()
        waits = [r.estimated_wait() for r in ready]
        limit = self.admission.max_queue_wait or 0.0
        retry = max(1, math.ceil(min(waits, default=1.0) - limit))
        detail = (
            f"all {len(ready)} replica queues are full"
            if full
            else f"every replica would make this request wait more than {limit:g}s"
        )
        return OpenAIError(
            429,
            f"server overloaded: {detail}; retry after {retry}s",
            code="server_overloaded",
            headers={"Retry-After": str(retry)},
        )

    def upstream_payload(self, request: GenerationRequest, slot: int | None = None) -> dict:
        payload = {
            **request.sampling,
            "prompt": request.prompt,
            "max_tokens": request.max_tokens,
            "stream": True,
        }
        if request.stop:
            payload["stop"] = request.stop
        engine = self.pool.engine
        if slot is not None and engine.slot_routing and self.pinned:
            payload["id_slot"] = slot  # run where the router found this prompt's cache
        # engine-specific fields (model/adapter name, stop_token_ids, usage...)
        return engine.dialect.adapt(payload, request.model)

    def stream_from(self, replica: Replica, payload: dict) -> AsyncIterator[dict]:
        """The replica's stream of chunks; Ray Serve (coderig.deploy.ray_app) goes via a handle."""
        return stream_completion(
            self.client, replica.url, payload, stall_timeout=self.stall_timeout
        )

    async def run(self, request: GenerationRequest) -> AsyncIterator[Event]:
        """Stream the generation; raises OpenAIError before the first Delta if it cannot start.

        A request that reached no engine (the connection was refused: nothing ran) is sent to
        another ready replica, each replica tried once; never once anything came back.
        """
        tracked = (
            self.supersession.track(request)
            if self.supersession is not None and request.supersedable
            else contextlib.nullcontext()
        )
        # aclosing: a consumer that stops early closes the attempt now (lease, stream)
        with tracked:
            async with contextlib.aclosing(self._route_and_run(request)) as events:
                async for event in events:
                    yield event

    async def _route_and_run(self, request: GenerationRequest) -> AsyncIterator[Event]:
        if self.before_route is not None:
            await self.before_route(request)
        decision = self.choose_replica(request)
        tried: set[int] = set()
        while True:
            try:
                # aclosing: a consumer that stops early closes the attempt now (lease, stream)
                async with contextlib.aclosing(self._run_on(decision, request)) as events:
                    async for event in events:
                        yield event
                return
            except _ReachedNoEngine as exc:
                tried.add(decision.replica.index)
                others = [
                    r
                    for r in self.pool.ready()
                    if r.index not in tried and self.admission.admits(r, self._flow(request))
                ]
                if not others:
                    raise exc.error from exc.__cause__
                decision = RouteDecision(_least_loaded(others), "retry")
                self.metrics.routed.labels(decision.reason).inc()

    async def _run_on(self, decision: RouteDecision, request: GenerationRequest):
        replica = decision.replica
        first_token_at: float | None = None
        computed = False
        pieces = 0
        text_parts: list[str] = []
        finish_reason = "stop"
        upstream_usage: dict | None = None
        slot_started = time.monotonic()
        try:
            flow = self._flow(request) or ""
            pinned = self.pinned
            async with self.pool.lease(
                replica,
                prefer=decision.slot if pinned else None,
                flow=flow,
                pinned=pinned,
                abandon=request.superseded,
                hold=self.hold_for(decision, request),
            ) as slot:
                self.router.record(decision, request.prompt, request.session, slot)
                chunks = self.stream_from(replica, self.upstream_payload(request, slot))
                slot_started = time.monotonic()
                self.metrics.queue_wait.observe(slot_started - request.received)
                # aclosing: when this generator is closed at a yield (a client or a stop rule
                # ends the generation), the replica stream closes now, not at GC.
                async with contextlib.aclosing(chunks):
                    async for chunk in chunks:
                        if request.superseded.is_set():
                            raise Abandoned("superseded while running")
                        if chunk.get("usage"):
                            upstream_usage = chunk["usage"]
                        choices = chunk.get("choices") or []
                        if not choices:
                            continue
                        if not computed:  # the prompt is in the replica's cache now
                            self.router.record_computed(replica, request.prompt)
                            computed = True
                        choice = choices[0]
                        text = choice.get("text") or ""
                        if text:
                            if first_token_at is None:
                                first_token_at = time.monotonic()
                                self.metrics.time_to_first_token.labels(request.route).observe(
                                    first_token_at - request.received
                                )
                            pieces += 1
                            text_parts.append(text)
                            yield Delta(text)
                        if choice.get("finish_reason"):
                            finish_reason = choice["finish_reason"]
        except ReplicaLost as exc:
            raise OpenAIError(
                503,
                f"{replica.name} went down before it could serve this request; retry",
                code="replica_lost",
                headers={"Retry-After": "1"},
            ) from exc
        except UpstreamFailure as exc:
            error = OpenAIError(
                503,
                f"{replica.name} failed during generation: {exc}; retry",
                code="replica_failed",
                headers={"Retry-After": "1"},
            )
            if isinstance(exc, UpstreamUnreachable) and pieces == 0:
                raise _ReachedNoEngine(error) from exc
            raise error from exc
        except UpstreamRejected as exc:
            status = exc.status if 400 <= exc.status < 500 else 502
            raise OpenAIError(
                status, f"the engine rejected the request: {exc.message}", code="engine_error"
            ) from exc
        except Abandoned as exc:
            # A newer request from the same developer replaced this one (queued or running).
            request.cancel_reason = "superseded"
            self._count_cancelled(request, pieces)
            raise OpenAIError(
                409,
                "superseded: a newer request from the same developer about the same code "
                "replaced this one before it finished",
                code="superseded",
            ) from exc
        except (GeneratorExit, asyncio.CancelledError):
            # The consumer stopped early: the client left, or a post-processing rule ended it.
            # Leaving the lease and the upstream stream stops the engine within a token.
            self._count_cancelled(request, pieces)
            raise

        replica.record_service_time(time.monotonic() - slot_started)
        cached = ((upstream_usage or {}).get("prompt_tokens_details") or {}).get("cached_tokens")
        if not isinstance(cached, int) or isinstance(cached, bool) or cached < 0:
            cached = None
        if cached:
            self.metrics.prompt_cached_tokens.inc(cached)

        completion_tokens = self._completion_tokens(
            upstream_usage, finish_reason, request.max_tokens, "".join(text_parts), pieces
        )
        # The engine's own prompt count beats ours when we only estimate (external engines).
        prompt_tokens = int((upstream_usage or {}).get("prompt_tokens") or request.prompt_tokens)
        self.metrics.prompt_tokens.inc(prompt_tokens)
        self.metrics.completion_tokens.inc(completion_tokens)
        self.metrics.request_duration.labels(request.route).observe(
            time.monotonic() - request.received
        )
        self._used(request, prompt_tokens + completion_tokens)
        yield Finished(finish_reason, prompt_tokens, completion_tokens, cached)

    def _count_cancelled(self, request: GenerationRequest, pieces: int) -> None:
        self.metrics.cancelled.labels(request.route, request.cancel_reason).inc()
        self.metrics.tokens_saved.labels(request.cancel_reason).inc(
            max(0, request.max_tokens - pieces)
        )
        self._used(request, request.prompt_tokens + pieces)

    def _used(self, request: GenerationRequest, tokens: int) -> None:
        if self.on_tokens is not None:
            self.on_tokens(request, tokens)

    def _completion_tokens(
        self, usage: dict | None, finish_reason: str, max_tokens: int, text: str, pieces: int
    ) -> int:
        """Exact when the engine reports usage or stopped at max_tokens; else re-tokenized."""
        if usage and usage.get("completion_tokens") is not None:
            return int(usage["completion_tokens"])
        if finish_reason == "length":
            return max_tokens
        return max(pieces, self.count_tokens(text)) if text else 0
