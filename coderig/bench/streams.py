"""Reading what completion servers stream back: one parser per line, shared by every bench load.

Kept to small synchronous functions over one line or one JSON object, because they run once per
token on the attack's hot path; the caller owns the socket, the clock and the counters.
Not httpx-sse: it reads httpx responses, and the attack's aiohttp client costs ~7× less CPU per
streamed request (BENCHMARKS.md, "Reading the stream").
"""

from __future__ import annotations

import json
from typing import Any


def sse_json(line: bytes) -> dict | None:
    """The JSON object of a server-sent-events ``data:`` line, or None (comments, blank
    keep-alive lines, ``[DONE]``, non-JSON or non-object payloads)."""
    if not line.startswith(b"data:"):
        return None
    payload = line[5:].strip()
    if not payload or payload == b"[DONE]":
        return None
    return json_object(payload)


def json_object(payload: bytes) -> dict | None:
    """A JSON object (an NDJSON line, a whole body), or None if it is anything else."""
    try:
        obj = json.loads(payload)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def openai_text(obj: dict) -> str | None:
    """The text of an OpenAI completion or chat chunk: ``choices[0].text`` or its delta."""
    choices = obj.get("choices")
    if not choices:
        return None
    c = choices[0]
    if not isinstance(c, dict):
        return None
    text = c.get("text")
    if text is None:
        delta = c.get("delta")
        text = delta.get("content") if isinstance(delta, dict) else None
    return text if isinstance(text, str) else None


def cached_prompt_tokens(obj: dict) -> int | None:
    """Prompt tokens the server reused from its cache, wherever it reports them: OpenAI's
    ``usage.prompt_tokens_details.cached_tokens`` (vLLM, coderig's replicas), llama.cpp server's
    ``timings.cache_n``, or the ``tokens_cached`` of its ``/infill`` and ``/completion``."""
    usage = obj.get("usage")
    if isinstance(usage, dict):
        details = usage.get("prompt_tokens_details")
        if isinstance(details, dict) and isinstance(details.get("cached_tokens"), int):
            return details["cached_tokens"]
    timings = obj.get("timings")
    if isinstance(timings, dict) and isinstance(timings.get("cache_n"), int):
        return timings["cache_n"]
    cached = obj.get("tokens_cached")
    return cached if isinstance(cached, int) and not isinstance(cached, bool) else None


def error_text(err: Any) -> str:
    """The message of an ``error`` member: OpenAI's and llama.cpp's objects, Ollama's string."""
    if isinstance(err, dict):
        return str(err.get("message") or err)
    return str(err)
