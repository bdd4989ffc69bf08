"""Where an editor prompt's code begins, chosen so that consecutive prompts begin alike.

Editors send a window of the file that slides with the cursor: the last N lines (llama.vim,
tabby-agent) or characters (Continue). Each new line moves the window's first line, so two
consecutive prompts differ in their very first tokens, and the engine's prefix cache (llama-server
compares a slot's cached tokens from the start) has to read the whole window again: a full
prefill for every request of a developer who is typing.

The gateway drops the window's first few lines, up to an *anchor* line picked by its content:
among the first ``lines`` line starts, the one whose text has the smallest CRC-32 (winnowing,
Schleimer, Wilkerson, Aiken, SIGMOD 2003). When the window slides down by a line, the anchor
stays the same line until the window's start passes it, or a line with a smaller hash comes into
range, so consecutive prompts keep the same first line and the cache serves all but the new
code. The anchor depends only on the text, so it holds across gateway restarts, replicas and
developers; it costs at most ``lines - 1`` lines of context and never more than a quarter of the
window, and windows shorter than ``lines`` are left whole (cheap to read again, and maybe the top
of a file, whose first lines matter). Blank lines hash lowest (CRC-32 of nothing is 0), so the
anchor is usually the first blank line in range: the start of a block. llama.vim gets the same
effect by moving its own window in large steps.
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
