"""A generation, run to an HTTP response: one pipeline for every API the gateway speaks.

OpenAI's completions and chat, Tabby, llama.cpp's ``/infill`` and Ollama differ only in how they
write text: the frames of a stream and the shape of a whole answer. That is an
:class:`Encoder`; everything else is here, once:

* the first event is awaited before any header goes out, so a request that cannot start (429,
  503, 409...) gets a real status instead of a 200 stream carrying an error;
* meanwhile the client is watched, so one that leaves while queued frees its place at once
  (and a whole answer stops generating when its client hangs up): 499;
* a stream that fails after its headers reports the error in-band, in the API's own shape, and
  its status is what the request is counted under (:mod:`coderig.serve.request_metrics`);
* the generation is always closed, so the engine stops within a token.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from fastapi import Request, Response
from fastapi.responses import StreamingResponse

from coderig.serve.disconnect import ClientGone, unless_client_leaves, whole_text
from coderig.serve.errors import OpenAIError
from coderig.serve.generate import Delta, Event, Finished
from coderig.serve.request_metrics import CLIENT_GONE, report_status


class Encoder:
    """How one API writes a generation; subclasses write their API's frames and answers."""

    media_type = "text/event-stream"

    def stream_headers(self) -> dict[str, str]:
        return {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

    def opening(self) -> bytes:
        """Written before the first text (OpenAI chat's role chunk)."""
        return b""

    def delta(self, text: str) -> bytes:
        raise NotImplementedError

    def finish(self, done: Finished) -> bytes:
        """The stream's last frame(s): finish reason, usage."""
        raise NotImplementedError

    def error(self, exc: OpenAIError) -> bytes:
        """An error after the headers went out, in the API's in-band shape."""
        raise NotImplementedError

    def closing(self) -> bytes:
        """Written at the very end, after an error too (OpenAI's ``data: [DONE]``)."""
        return b""

    def whole(self, text: str, done: Finished) -> Response:
        """The answer to a request that did not ask to stream."""
        raise NotImplementedError


def sse_data(obj: dict) -> bytes:
    """One server-sent event carrying ``obj`` as compact JSON. Written here rather than with
    sse-starlette's EventSourceResponse: the APIs' clients expect these exact frames (OpenAI's
    ``data: [DONE]``, llama.cpp's events) without its keep-alive pings and CRLF separators."""
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


async def respond(
    request: Request, events: AsyncIterator[Event], encoder: Encoder, *, stream: bool
) -> Response:
    """The response for ``events``; raises OpenAIError when the generation cannot start (the
    route's error handler writes it in its API's shape)."""
    try:
        if stream:
            first = await unless_client_leaves(request, anext(events))
        else:
            text, done = await unless_client_leaves(request, whole_text(events))
    except ClientGone:
        # The client hung up: closing the generation stops it on the replica.
        await events.aclose()
        report_status(request, CLIENT_GONE)
        return Response(status_code=CLIENT_GONE)
    except BaseException:
        await events.aclose()
        raise
    if not stream:
        return encoder.whole(text, done)
    return StreamingResponse(
        _frames(request, first, events, encoder),
        media_type=encoder.media_type,
        headers=encoder.stream_headers(),
    )


async def _frames(
    request: Request, first: Event, events: AsyncIterator[Event], encoder: Encoder
) -> AsyncIterator[bytes]:
    try:
        opening = encoder.opening()
        if opening:
            yield opening
        event = first
        while isinstance(event, Delta):
            yield encoder.delta(event.text)
            event = await anext(events)
        yield encoder.finish(event)
    except OpenAIError as exc:
        # Headers are gone; report in-band as vLLM, OpenAI and llama.cpp do, then end.
        report_status(request, exc.status)
        yield encoder.error(exc)
    except asyncio.CancelledError:
        report_status(request, CLIENT_GONE)
        raise
    finally:
        await events.aclose()
    closing = encoder.closing()
    if closing:
        yield closing
