"""uvicorn's HTTP protocol (httptools), with the limits a public-facing server needs.

uvicorn bounds neither the size of a request head nor the time a client may take to send it:
a client sending one header byte a second (slowloris), or opening a connection and sending
nothing, holds a connection forever, and one sending a megabyte of headers is buffered in full.
This subclass adds two limits, applied before any of the app's code runs:

* ``max_head_bytes``: request line + headers larger than this get **431** and a closed
  connection;
* ``head_timeout``: a new connection must deliver a complete request head this many seconds
  after it opens, and a kept-alive one within this many seconds of the first byte of its next
  request: otherwise **408** and closed (a connection that never sent a byte is just closed).
  Idle kept-alive connections are closed by uvicorn's own keep-alive timeout.

Slow *bodies* are bounded by the body-size middleware's read deadline (``limits.py``).
"""

from __future__ import annotations

import asyncio
import json

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from coderig.serve.errors import error_body

STATUS_TEXT = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    max_head_bytes = 64 * 1024
    head_timeout = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_bytes = 0
        self._head_started = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._arm_head_timer()

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_too_slow)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0
        self._head_started = True
        if self._head_timer is None:
            self._arm_head_timer()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._head_started = False
        self._cancel_head_timer()
        HttpToolsProtocol.on_headers_complete(self)

    def _count(self, n: int) -> None:
        self._head_bytes += n
        if self._head_bytes > self.max_head_bytes and not self.transport.is_closing():
            self._reject(431, f"request head larger than {self.max_head_bytes} bytes")

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if not self._head_started:
            self.transport.close()  # connected and said nothing
            return
        self._reject(408, f"request head not received within {self.head_timeout:g}s")

    def _reject(self, status: int, message: str) -> None:
        code = "request_timeout" if status == 408 else "headers_too_large"
        body = json.dumps(error_body(message, "invalid_request_error", None, code)).encode()
        head = b"HTTP/1.1 %d %s\r\n" % (status, STATUS_TEXT[status])
        head += b"content-type: application/json\r\ncontent-length: %d\r\n" % len(body)
        head += b"connection: close\r\n\r\n"
        self.transport.write(head + body)
        self.transport.close()


def guarded_protocol(max_head_bytes: int, head_timeout: float) -> type[GuardedHttpToolsProtocol]:
    """A protocol class with these limits, for ``uvicorn.Config(http=...)``."""
    return type(
        "GuardedHttpToolsProtocol",
        (GuardedHttpToolsProtocol,),
        {"max_head_bytes": max_head_bytes, "head_timeout": head_timeout},
    )
