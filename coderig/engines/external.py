"""Servers the user already runs: vLLM, llama.cpp's ``llama-server``, Ollama's OpenAI API, or
another coderig replica. The gateway starts nothing; it health-checks each ``--upstream`` URL on
``/v1/models`` (the one route all of them have), routes to the ready ones, and stops routing to
one that stops answering until it answers again.

At startup the gateway asks the first upstream which models it serves (``GET /v1/models``): the
first id becomes the model the gateway asks for (vLLM and Ollama check the ``model`` field), the
others (vLLM LoRA adapters, other Ollama models) are served under their own names too.

An upstream that requires an API key (``vllm serve --api-key``, ``llama-server --api-key``) is
sent the one in ``CODERIG_UPSTREAM_API_KEY``: the environment, never a flag, keeps it out of argv.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from coderig.engines.base import UPSTREAM_KEY_ENV, Dialect, Launch, bearer_headers
from coderig.engines.errors import UpstreamUnreachable

__all__ = ["ExternalEngine", "UpstreamUnreachable", "list_upstream_models", "normalize_upstream"]


def normalize_upstream(url: str) -> str:
    """``host:port``, ``http://host:port/`` and ``http://host:port/v1`` all mean the server root."""
    url = url.strip()
    if "://" not in url:
        url = f"http://{url}"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"--upstream {url!r}: expected http://host:port")
    path = parts.path.rstrip("/")
    if path.endswith("/v1"):
        path = path[: -len("/v1")]
    return f"{parts.scheme}://{parts.netloc}{path}"


def list_upstream_models(urls: list[str], timeout: float = 5.0) -> list[str]:
    """Model ids the first answering upstream serves, in its order (base model first).

    Raises :class:`UpstreamUnreachable` when no upstream answers ``/v1/models``."""
    errors = []
    for url in urls:
        try:
            response = httpx.get(
                f"{url}/v1/models",
                timeout=timeout,
                headers=bearer_headers(os.environ.get(UPSTREAM_KEY_ENV)),
            )
            response.raise_for_status()
            data = response.json().get("data") or []
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            errors.append(f"{url}: {exc.__class__.__name__}: {exc}")
            continue
        # vLLM lists LoRA adapters with "parent" set to the base model: base first.
        ordered = sorted(data, key=lambda m: 1 if m.get("parent") else 0)
        ids = [str(m["id"]) for m in ordered if m.get("id")]
        if ids:
            return ids
        errors.append(f"{url}: /v1/models lists no model")
    raise UpstreamUnreachable("; ".join(errors))


@dataclass
class ExternalEngine:
    """Upstreams we do not start. ``slots`` is how many requests the gateway sends one at once."""

    model: str  # the id to send upstream in "model"
    slots: int = 16
    name: str = "external"
    health_path: str = "/v1/models"  # the one route every OpenAI-compatible server has
    slot_routing: bool = False
    cold_hold: float = 0.0
    per_request_lora: bool = True  # the upstream serves every model it lists
    # /v1/load_lora_adapter is forwarded; the upstream (vLLM) decides whether it allows it.
    runtime_lora: bool = True
    adapters: dict[str, str] = field(default_factory=dict)
    dialect: Dialect | None = None  # set by the gateway: it needs the tokenizer
    # not started by the gateway: its key, if it needs one, comes from CODERIG_UPSTREAM_API_KEY
    secret_env: str | None = None

    def launch(self, *, index: int, port: int) -> Launch | None:
        return None
