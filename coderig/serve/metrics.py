"""Prometheus metrics for the gateway, on a registry of its own (one per app, so tests and
several gateways in one process do not collide)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

# The *_created series double every counter's output and no dashboard uses them.
disable_created_metrics()

# Code completion lives between 50 ms and a few seconds; past 30 s nobody is waiting.
LATENCY_BUCKETS = (
    0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0,
    2.5, 3.0, 4.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0,
)  # fmt: skip
TTFT_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75,
    1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0,
)  # fmt: skip

# Seconds: a small model on CPU starts in ~1 s, a 7B vLLM replica in a minute or more.
COLD_START_BUCKETS = (0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0, 300.0)


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "coderig_requests",
            "Requests answered, by route and HTTP status (a stream that failed after its "
            "headers is counted with the status of its in-band error).",
            ["route", "status"],
            registry=r,
        )
        self.request_duration = Histogram(
            "coderig_request_duration_seconds",
            "End-to-end latency of successful generations, from request received to last token.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.time_to_first_token = Histogram(
            "coderig_time_to_first_token_seconds",
            "From request received to the first generated token.",
            ["route"],
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "coderig_queue_wait_seconds",
            "Time a request waited in the gateway for a replica slot.",
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.prompt_tokens = Counter(
            "coderig_prompt_tokens", "Prompt tokens of accepted requests.", registry=r
        )
        self.completion_tokens = Counter(
            "coderig_completion_tokens", "Tokens generated.", registry=r
        )
        self.in_flight = Gauge(
            "coderig_replica_requests_in_flight",
            "Requests assigned to a replica: running on it or queued for it in the gateway.",
            ["replica"],
            registry=r,
        )
        self.queued = Gauge(
            "coderig_replica_requests_queued",
            "Requests waiting in the gateway for one of the replica's slots.",
            ["replica"],
            registry=r,
        )
        self.replica_up = Gauge(
            "coderig_replica_up", "1 when the replica is ready to serve.", ["replica"], registry=r
        )
        self.key_requests = Counter(
            "coderig_key_requests",
            "Authenticated requests per API key name (never the key itself).",
            ["key"],
            registry=r,
        )
        self.key_tokens = Counter(
            "coderig_key_tokens",
            "Tokens (prompt + completion, cancelled generations included) per API key name.",
            ["key"],
            registry=r,
        )
        self.shed = Counter(
            "coderig_shed_requests",
            "Requests refused at once by admission control (429) or for want of a replica (503).",
            ["reason"],
            registry=r,
        )
        self.routed = Counter(
            "coderig_routed_requests",
            "Routing decisions: prefix (cached prompt), session (sticky user), least-busy, retry "
            "(the first replica was unreachable).",
            ["reason"],
            registry=r,
        )
        self.cancelled = Counter(
            "coderig_cancelled_requests",
            "Generations stopped early, by why: client (disconnected), superseded (a newer "
            "editor request from the same developer replaced it) or a server-side rule.",
            ["route", "reason"],
            registry=r,
        )
        self.tokens_saved = Counter(
            "coderig_cancelled_tokens_saved",
            "max_tokens minus tokens generated, for generations stopped early: an upper bound "
            "on the decode work not done.",
            ["reason"],
            registry=r,
        )
        self.cold_held = Counter(
            "coderig_cold_held_requests",
            "Requests whose prompt was mostly not cached on their replica, held (--cold-hold) "
            "until the replica ran nothing or the hold ran out.",
            registry=r,
        )
        self.prompt_cached_tokens = Counter(
            "coderig_prompt_cached_tokens",
            "Prompt tokens the engine reused from its cache instead of prefilling.",
            registry=r,
        )
        self.replica_restarts = Counter(
            "coderig_replica_restarts", "Times a replica was restarted.", ["replica"], registry=r
        )
        # --- editor APIs and post-processing (coderig/serve/editors, postprocess.py) ---
        self.stop_rule_hits = Counter(
            "coderig_stop_rule_hits",
            "Generations ended or trimmed by an editor stop rule (blank_line, dedent, top_level, "
            "suffix_repeat) or by the time budget (time_budget), by language.",
            ["rule", "language"],
            registry=r,
        )
        self.stop_tokens_saved = Counter(
            "coderig_tokens_saved",
            "Estimated tokens not generated because a stop rule or the time budget cancelled the "
            "generation: max_tokens minus the tokens generated (an upper bound).",
            registry=r,
        )
        self.editor_completions = Counter(
            "coderig_editor_completions",
            "Completions answered on an editor API (tabby, infill, ollama), by language and key.",
            ["api", "language", "key"],
            registry=r,
        )
        self.completion_events = Counter(
            "coderig_completion_events",
            "Editor telemetry events (Tabby's /v1/events: view, select, dismiss), by the language "
            "and key name of the completion they are about.",
            ["event", "language", "key"],
            registry=r,
        )
        self.acceptance_rate = Gauge(
            "coderig_completion_acceptance_rate",
            "Accepted completions (select events) per completion shown (view events), since the "
            "gateway started, by language and key name.",
            ["language", "key"],
            registry=r,
        )
        # fleet: scale to zero (coderig.serve.idle).
        self.cold_starts = Counter(
            "coderig_cold_starts",
            "Times the replicas were started after scale to zero, by what started them "
            "(a waiting request, or the --schedule opening).",
            ["reason"],
            registry=r,
        )
        self.cold_start_seconds = Histogram(
            "coderig_cold_start_seconds",
            "Cold starts after scale to zero: with coderig serve from scale-up to all replicas "
            "ready; on Ray Serve from the waiting request to its first token.",
            buckets=COLD_START_BUCKETS,
            registry=r,
        )
        self.idle_shutdowns = Counter(
            "coderig_idle_shutdowns",
            "Times the replicas were stopped after --idle-shutdown without requests.",
            registry=r,
        )
        self.scaled_to_zero = Gauge(
            "coderig_scaled_to_zero", "1 while the replicas are scaled to zero.", registry=r
        )
