"""A developer's newer editor request replaces their older ones still queued or running:
:class:`Supersession` tracks the editor requests in flight per flow and marks older ones about the
same code (:func:`same_code`) as superseded, so they give up their place or slot and are answered
409 instead of working on a suggestion that will never be shown. See docs/architecture.md,
section 5.3 (supersession).
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
