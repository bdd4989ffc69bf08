"""What the gateway needs to know to start, check and talk to one engine replica.

Every engine (llama.cpp's llama-server, vLLM, an external URL) is reached the same way: an
OpenAI-compatible HTTP server on a private localhost port that streams ``/v1/completions``.
An engine says how to launch that server and states what it can do, as attributes every engine
has (the pool, the router, the LoRA routes and the Ray deployment read them; none guesses).
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from typing import Protocol

# The gateway's own secrets: a replica has no use for them, so they are not inherited.
UPSTREAM_KEY_ENV = "CODERIG_UPSTREAM_API_KEY"  # the key an external upstream requires, if any
_GATEWAY_ONLY_ENV = ("CODERIG_API_KEYS", "CODERIG_ADMIN_KEYS", UPSTREAM_KEY_ENV)


@dataclass(frozen=True)
class Launch:
    """A replica's command line and environment (secrets go in the environment, not argv)."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)


class Dialect(Protocol):
    """Rewrites the gateway's upstream ``/v1/completions`` payload for one kind of engine."""

    def adapt(self, payload: dict, model: str | None) -> dict: ...


class Engine(Protocol):
    name: str
    # Requests one replica runs at the same time; more wait in the gateway's queue, where
    # they can be routed, shed and cancelled for free.
    slots: int
    # A route that answers 200 once the engine can serve, also while it is busy.
    health_path: str
    dialect: Dialect
    # The engine runs a request in the slot the gateway names (llama-server's ``id_slot``).
    slot_routing: bool
    # Seconds a request whose prompt is mostly not cached waits by default for the replica to
    # run nothing (``coderig serve --cold-hold``): where a forward pass costs in proportion to
    # its tokens (llama.cpp on a CPU), a prefill beside running decodes stalls them all; 0 where
    # a GPU batches a prefill chunk with the decodes almost for free.
    cold_hold: float
    # Any replica serves any LoRA adapter, chosen per request (vLLM multi-LoRA, llama-server).
    per_request_lora: bool
    # Adapters can be loaded while serving (``/v1/load_lora_adapter``).
    runtime_lora: bool
    # LoRA adapters replicas load when they start, by served name; a runtime load is added
    # here, so a replica restarted later loads it too.
    adapters: dict
    # The environment variable through which a replica takes the API key it then requires of
    # every caller (llama-server's LLAMA_API_KEY, vLLM's VLLM_API_KEY): the pool sets a fresh
    # secret per run that only the gateway holds. None for servers the gateway does not start.
    secret_env: str | None

    def launch(self, *, index: int, port: int) -> Launch | None:
        """The command that starts replica ``index`` on ``port``; None for external servers."""
        ...


def new_replica_secret() -> str:
    """A bearer token for one run's replicas (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def replica_environment(engine: Engine, launch: Launch, secret: str | None) -> dict[str, str]:
    """The environment a replica process starts with: the gateway's, minus the gateway's own
    secrets, plus the engine's, plus the replica secret under the engine's variable (never argv:
    ``ps`` shows every user a process's argv, not its environment)."""
    env = {k: v for k, v in os.environ.items() if k not in _GATEWAY_ONLY_ENV}
    env.update(launch.env)
    if engine.secret_env is not None and secret is not None:
        env[engine.secret_env] = secret
    return env


def bearer_headers(secret: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"} if secret else {}
