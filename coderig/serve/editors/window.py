"""Where an editor prompt's code begins: the sliding window's first lines are dropped up to an
anchor line, so consecutive prompts begin alike and the engine's prefix cache serves all but the
new code. See docs/architecture.md, section 5.5 (the stable window anchor).

Two ways to pick the anchor:

* :func:`stable_start`, by content alone (winnowing: the smallest CRC-32 among the lines that
  may be dropped). It needs no memory and gives every gateway the same answer, but it moves
  whenever the chosen line slides out of reach or a smaller hash slides in: about every blank
  line in code, since a blank line hashes to 0.
* :class:`StableWindows`, per developer: a developer's anchor is kept for as long as it stays
  within reach, and when it must move, the new one is taken as deep as allowed, so it lasts
  as long as it can. A prompt that loses its anchor is re-read whole, so this is what a typing
  team's prefix cache lives on (BENCHMARKS.md, issue 18).
"""

from __future__ import annotations

import zlib
from collections import OrderedDict

__all__ = ["StableWindows", "stable_start"]

# By default never drop more than this share of the window's complete lines.
MAX_DROPPED_SHARE = 0.5
# A developer's anchor is recognised by its line and the ones after it, up to this many lines.
ANCHOR_KEY_LINES = 3
# Anchors remembered per developer: their last few places (files, or the developers behind one
# address when there are no keys or sessions to tell them apart), most recent first.
ANCHORS_PER_FLOW = 8


def stable_start(prefix: str, lines: int, max_drop: float = MAX_DROPPED_SHARE) -> str:
    """``prefix`` from its anchor line on, picked by content; unchanged when ``lines`` < 2 or
    the window is short."""
    candidates = _candidates(prefix, lines, max_drop)
    if not candidates:
        return prefix

    def line_hash(start: int) -> int:
        end = prefix.find("\n", start)
        return zlib.crc32(prefix[start:end].encode("utf-8", "surrogatepass"))

    anchor = min(candidates, key=line_hash)  # the first of equal hashes
    return prefix[anchor:]


class StableWindows:
    """Each developer's anchor lines (``flow`` as the gateway queues them), kept while they are
    within reach. Without a developer (``flow`` None), or with ``per_developer`` off (serve's
    ``--stable-window-anchor content``), the anchor is picked by content."""

    def __init__(
        self,
        lines: int,
        max_drop: float = MAX_DROPPED_SHARE,
        *,
        per_developer: bool = True,
        capacity: int = 4096,
    ) -> None:
        self.lines = lines
        self.max_drop = max_drop
        self.per_developer = per_developer
        self.capacity = capacity
        self._anchors: OrderedDict[str, list[str]] = OrderedDict()  # flow -> anchor keys

    def start(self, prefix: str, flow: str | None) -> str:
        if flow is None or not self.per_developer:
            return stable_start(prefix, self.lines, self.max_drop)
        candidates = _candidates(prefix, self.lines, self.max_drop)
        if not candidates:
            return prefix
        keys = self._anchors.get(flow, [])
        for i, key in enumerate(keys):
            for start in candidates:
                if prefix.startswith(key, start):
                    self._remember(flow, [key, *keys[:i], *keys[i + 1 :]])
                    return prefix[start:]
        anchor = candidates[-1]  # as deep as allowed: the window slides longest before it
        self._remember(flow, [_key(prefix, anchor), *keys][:ANCHORS_PER_FLOW])
        return prefix[anchor:]

    def _remember(self, flow: str, keys: list[str]) -> None:
        self._anchors[flow] = keys
        self._anchors.move_to_end(flow)
        while len(self._anchors) > self.capacity:
            self._anchors.popitem(last=False)


def _candidates(prefix: str, lines: int, max_drop: float) -> list[int]:
    """The line starts the window may begin at (its first complete lines, within ``lines`` and
    the ``max_drop`` share of them); empty when it must stay whole."""
    if lines < 2:
        return []
    starts = [0]
    at = prefix.find("\n")
    # Candidates: starts of complete lines (the cursor's own line is never one).
    while at != -1 and at + 1 < len(prefix):
        starts.append(at + 1)
        at = prefix.find("\n", at + 1)
    complete = len(starts) - 1 if not prefix.endswith("\n") else len(starts)
    if complete < lines:
        return []  # a short window: cheap to read again, and maybe the top of the file
    reach = min(lines, int(complete * max_drop) + 1)
    return starts[:reach] if reach >= 2 else []


def _key(prefix: str, start: int) -> str:
    """The anchor line and the lines after it (a blank line alone would match anywhere)."""
    end = start
    for _ in range(ANCHOR_KEY_LINES):
        next_end = prefix.find("\n", end)
        if next_end == -1:
            break
        end = next_end + 1
    return prefix[start:end]
