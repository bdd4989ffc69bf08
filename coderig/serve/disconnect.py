"""Waiting on a generation while watching its client.

Editors cancel a suggestion at the next keystroke by closing the connection. Whatever the gateway
is awaiting for that request — its first event, or the whole completion — must then be
cancelled at once (which closes the upstream stream and stops the engine), not when it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

from fastapi import Request

from coderig.serve.errors import OpenAIError
from coderig.serve.generate import Delta, Event, Finished

T = TypeVar("T")


class ClientGone(Exception):
    """The client hung up before the awaited work finished; the work was cancelled."""


async def client_gone(request: Request) -> None:
    """Returns when the client disconnects."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def unless_client_leaves(request: Request, work: Awaitable[T]) -> T:
    """``work``'s result, or :class:`ClientGone` (with ``work`` cancelled) if the client
    leaves first. ``work``'s own exceptions (an ``OpenAIError``) propagate."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(client_gone(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, OpenAIError):
            await task
        raise ClientGone
    return task.result()


async def whole_text(events: AsyncIterator[Event]) -> tuple[str, Finished]:
    """The generation's text and its finish event."""
    parts: list[str] = []
    async for event in events:
        if isinstance(event, Delta):
            parts.append(event.text)
        else:
            return "".join(parts), event
    raise OpenAIError(502, "generation ended without a finish event", code="engine_error")
