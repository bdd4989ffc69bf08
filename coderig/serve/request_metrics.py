"""Every API request counted once, by route and final status, in one place.

``coderig_requests_total{route,status}`` is counted by an ASGI middleware when the response is
over, so no handler, error path or stream has to remember to do it. The status is the HTTP
status the client got, except for two cases only the handler knows about, which it reports with
:func:`report_status`: a stream whose headers went out as 200 and that then failed (the status
of its in-band error), and a client that left before the answer (499, nginx's "client closed
request"). The route label is the route's name in :data:`ROUTE_LABELS`, or the route's own name;
a handler that answers for another API on a shared path (Tabby's body on ``/v1/completions``)
relabels its request with :func:`label_request`. Operations routes (``/health``, ``/ready``,
``/metrics``, the OpenAPI pages) and paths that match no route are not counted, so a scanner's
random paths do not become label values.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from coderig.serve.metrics import GatewayMetrics

# route name -> the label it is counted under
ROUTE_LABELS = {
    "completions": "completions",
    "chat_completions": "chat",
    "infill": "infill",
    "ollama_generate": "ollama",
    "tabby_events": "tabby_events",
}
# routes never counted: probes, scrapes and documentation
UNCOUNTED = {
    "health",
    "ready",
    "metrics",
    "openapi",
    "swagger_ui_html",
    "swagger_ui_redirect",
    "redoc_html",
}

CLIENT_GONE = 499  # nginx's "client closed request"
_LABEL = "coderig_route_label"
_STATUS = "coderig_status"


def label_request(request: Request, label: str) -> None:
    """Count this request under ``label`` instead of its route's."""
    setattr(request.state, _LABEL, label)


def report_status(request: Request, status: int) -> None:
    """The request's outcome, when the HTTP status does not tell it (in-band error, 499)."""
    setattr(request.state, _STATUS, status)


class RequestCounter:
    """ASGI middleware: count each API request when its response is over."""

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent: list[int] = []

        async def send_and_note(message: Message) -> None:
            if message["type"] == "http.response.start":
                sent.append(message["status"])
            await send(message)

        status: int | None = None
        try:
            await self.app(scope, receive, send_and_note)
            status = sent[0] if sent else CLIENT_GONE
        except asyncio.CancelledError:
            status = sent[0] if sent else CLIENT_GONE
            raise
        except Exception:
            status = sent[0] if sent else 500
            raise
        # Other BaseExceptions (a body too large or too slow, coderig.serve.limits) are
        # answered by the middleware outside this one, before any route ran: not counted.
        finally:
            if status is not None:
                self._count(scope, status)

    def _count(self, scope: Scope, status: int) -> None:
        state = scope.get("state") or {}
        label = state.get(_LABEL)
        if label is None:
            name = getattr(scope.get("route"), "name", None)
            if name is None or name in UNCOUNTED:
                return
            label = ROUTE_LABELS.get(name, name)
        self.metrics.requests.labels(label, str(state.get(_STATUS, status))).inc()
