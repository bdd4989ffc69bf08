"""Where an editor prompt's code begins: :func:`stable_start` drops the sliding window's first
lines up to an anchor line chosen by content (winnowing: the smallest CRC-32), so consecutive
prompts begin alike and the engine's prefix cache serves all but the new code. See
docs/architecture.md, section 5.5 (the stable window anchor).
"""

from __future__ import annotations

import zlib

# Never drop more than this share of the window's complete lines.
MAX_DROPPED_SHARE = 0.25


def stable_start(prefix: str, lines: int) -> str:
    """``prefix`` from its anchor line on; unchanged when ``lines`` < 2 or the window is short."""
    if lines < 2:
        return prefix
    starts = [0]
    at = prefix.find("\n")
    # Candidates: starts of complete lines (the cursor's own line is never one).
    while at != -1 and at + 1 < len(prefix):
        starts.append(at + 1)
        at = prefix.find("\n", at + 1)
    complete = len(starts) - 1 if not prefix.endswith("\n") else len(starts)
    if complete < lines:
        return prefix  # a short window: cheap to read again, and maybe the top of the file
    reach = min(lines, int(complete * MAX_DROPPED_SHARE) + 1)
    if reach < 2:
        return prefix
    candidates = starts[:reach]

    def line_hash(start: int) -> int:
        end = prefix.find("\n", start)
        return zlib.crc32(prefix[start:end].encode("utf-8", "surrogatepass"))

    anchor = min(candidates, key=line_hash)  # the first of equal hashes
    return prefix[anchor:]
