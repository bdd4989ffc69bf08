"""What the gateway needs to know to start, check and talk to one engine replica.

Every engine (llama.cpp, vLLM, an external URL) is reached the same way: an OpenAI-compatible
HTTP server on a private localhost port that streams ``/v1/completions``. An engine only says
how to launch that server and how many requests it can run at once (``slots``); the pool in
``coderig.serve.pool`` does the supervising.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Launch:
    """A replica's command line, and how to tell it is up."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    health_path: str = "/v1/models"


class Engine(Protocol):
    name: str
    # Requests one replica runs at the same time; more wait in the gateway's queue, where
    # they can be routed, shed and cancelled for free.
    slots: int
    # Upstream request fields this engine understands beyond OpenAI's.
    supports_min_tokens: bool

    def launch(self, *, index: int, port: int) -> Launch | None:
        """The command that starts replica ``index`` on ``port``; None for external servers."""
        ...
