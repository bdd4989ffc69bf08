"""A developer's newer editor request replaces their older one still queued or running.

An editor asks for a completion at each pause in typing, and the suggestion for the previous
pause is useless once the developer typed on: it will never be shown. Editors cancel it by
closing the connection, which the gateway already turns into a cancelled generation; but not
every client closes in time (a proxy that keeps the upstream connection, an editor that lets a
stale request finish and drops the answer), and on a busy replica that request still holds a
place in the queue or a slot ahead of the one that matters. So a new editor request (Tabby,
``/infill``, Ollama) from a developer marks that developer's older editor requests as
superseded: a queued one leaves the queue, a running one stops at its next token, and both are
answered 409 ``superseded``.

"That developer" is the request's fairness flow (the API key's name, else ``user`` or the
session header, else the client address), and because a flow may still be shared (a team key,
an office behind one address), the two prompts must also be about the same code: at least half
of the older prompt's non-blank lines appear in the newer one, as they do when a window slides
down a file line by line. OpenAI routes are never superseded: a script may send many at once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from coderig.serve.generate import GenerationRequest

# Share of the older prompt's non-blank lines the newer one must contain to replace it.
SAME_CODE_SHARE = 0.5


def _lines(prompt: str) -> set[str]:
    return {line.strip() for line in prompt.splitlines() if line.strip()}


def same_code(older: str, newer: str) -> bool:
    """The newer prompt carries most of the older one's code lines (a window that moved)."""
    old = _lines(older)
    if not old:
        return False
    return len(old & _lines(newer)) >= SAME_CODE_SHARE * len(old)


class Supersession:
    """The editor requests in flight, per flow, and the rule that lets a newer one replace them."""

    def __init__(self) -> None:
        self._live: dict[str, list[GenerationRequest]] = {}
        self.superseded = 0

    def in_flight(self, flow: str) -> int:
        return len(self._live.get(flow, ()))

    @contextlib.contextmanager
    def track(self, request: GenerationRequest) -> Iterator[None]:
        """While the block runs, ``request`` is in flight; on entry it supersedes its flow's
        older requests about the same code."""
        live = self._live.setdefault(request.flow, [])
        for older in live:
            if not older.superseded.is_set() and same_code(older.prompt, request.prompt):
                older.superseded.set()
                self.superseded += 1
        live.append(request)
        try:
            yield
        finally:
            live.remove(request)
            if not live:
                del self._live[request.flow]
