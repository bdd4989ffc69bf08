"""ASGI middleware that bounds request bodies: size (413) and the time to send them (408).

It checks ``Content-Length`` up front and also counts bytes as they arrive, so a chunked or
lying client cannot make the gateway buffer more than the limit; and a client that trickles its
body (slowloris on the body) gets 408 once ``read_timeout`` seconds have passed since the
request began. Once the body is complete, ``receive`` is passed through untouched: it is then
only used to learn that the client disconnected.
"""

from __future__ import annotations

import asyncio
import json
import time

from coderig.serve.errors import error_body


# BaseException, not Exception: FastAPI turns any Exception raised while it reads the body into
# a generic 400 "error parsing the body"; these must reach this middleware to become 413/408.
class BodyTooLarge(BaseException):
    pass


class BodyTooSlow(BaseException):
    pass


class BodySizeLimit:
    def __init__(self, app, max_bytes: int, read_timeout: float = 30.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.read_timeout = read_timeout

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_bytes:
                    if declared <= self.drain_limit:
                        await self._drain(receive)
                    await self._reject(send)
                    return
        seen = 0
        response_started = False
        body_done = False
        deadline = time.monotonic() + self.read_timeout

        async def counting_receive():
            nonlocal seen, body_done
            if body_done:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                raise BodyTooSlow from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge
                body_done = not message.get("more_body", False)
            return message

        async def tracking_send(message):
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not response_started:
                await self._reject(send)
        except BodyTooSlow:
            if not response_started:
                await self._reject(
                    send,
                    408,
                    f"request body not received within {self.read_timeout:g}s",
                    "request_timeout",
                )

    @property
    def drain_limit(self) -> int:
        return max(16 * 1024 * 1024, 8 * self.max_bytes)

    async def _drain(self, receive) -> None:
        """Read and discard a refused body before answering: a server that closes while the
        client still uploads makes the client see a connection reset, not the 413."""
        deadline = time.monotonic() + self.read_timeout
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                return
            if message["type"] != "http.request" or not message.get("more_body", False):
                return

    async def _reject(self, send, status: int = 413, message: str = "", code: str = "") -> None:
        body = json.dumps(
            error_body(
                message
                or f"request body is larger than this server's limit of {self.max_bytes} bytes",
                "invalid_request_error",
                None,
                code or "request_too_large",
            )
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
