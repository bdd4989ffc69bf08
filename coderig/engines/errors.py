"""How a call to a replica or an upstream server fails: one set of exceptions for every caller.

The gateway's streaming client (``coderig.serve.upstream``), the external engine's startup
question (:func:`coderig.engines.external.list_upstream_models`) and the Ray Serve app all raise
and catch these, so "nothing reached the engine" means one class wherever it is asked.
"""

from __future__ import annotations

__all__ = ["UpstreamFailure", "UpstreamRejected", "UpstreamUnreachable"]


class UpstreamFailure(Exception):
    """The replica connection broke or stalled mid-request."""


class UpstreamUnreachable(UpstreamFailure):
    """No connection to the replica could be made: nothing reached the engine, so the request
    can safely go to another replica (and at startup, the message names the URLs tried)."""


class UpstreamRejected(Exception):
    """The replica answered with an error status; ``status`` and ``message`` are its own."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
