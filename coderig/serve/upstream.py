"""Talking to one replica: a streamed ``/v1/completions`` call, read chunk by chunk.

The gateway always asks the replica to stream, even when its own client did not: that is how it
knows the time to first token, can stop a generation by closing the connection, and notices a
dead replica at once (the socket closes) instead of waiting for a timeout.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx

from coderig.engines.errors import UpstreamFailure, UpstreamRejected, UpstreamUnreachable

__all__ = [
    "UpstreamFailure",
    "UpstreamRejected",
    "UpstreamUnreachable",
    "stream_completion",
]


async def stream_completion(
    client: httpx.AsyncClient,
    base_url: str,
    payload: dict,
    *,
    stall_timeout: float,
) -> AsyncIterator[dict]:
    """Yield each JSON chunk the replica streams, until ``[DONE]``."""
    timeout = httpx.Timeout(connect=5.0, read=stall_timeout, write=10.0, pool=10.0)
    try:
        async with client.stream(
            "POST", f"{base_url}/v1/completions", json=payload, timeout=timeout
        ) as response:
            if response.status_code != 200:
                raw = await response.aread()
                raise UpstreamRejected(response.status_code, _error_message(raw))
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue  # blank separators, comments, pings
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                chunk = json.loads(data)
                if chunk.get("object") == "error":  # older vLLM: the ErrorResponse itself
                    code = chunk.get("code")
                    status = code if isinstance(code, int) and 400 <= code < 600 else 500
                    raise UpstreamRejected(status, str(chunk.get("message")))
                if "error" in chunk:
                    error = chunk["error"]
                    message = (
                        error.get("message", str(error)) if isinstance(error, dict) else str(error)
                    )
                    raise UpstreamRejected(500, message)
                yield chunk
        raise UpstreamFailure("replica closed the stream before [DONE]")
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        raise UpstreamUnreachable(f"replica unreachable ({exc.__class__.__name__}: {exc})") from exc
    except httpx.TimeoutException as exc:
        raise UpstreamFailure(f"replica produced nothing for {stall_timeout:.0f}s") from exc
    except (httpx.TransportError, httpx.StreamError) as exc:
        raise UpstreamFailure(f"replica connection lost ({exc.__class__.__name__})") from exc


def _error_message(raw: bytes) -> str:
    try:
        body = json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", errors="replace")[:500] or "no detail"
    if isinstance(body, dict):
        error = body.get("error") or body.get("detail") or body
        if isinstance(error, dict):
            return str(error.get("message", error))
        return str(error)
    return str(body)
