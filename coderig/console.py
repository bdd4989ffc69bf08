"""One way to make a rich Console for every command.

Rich wraps at 80 columns when output is not a terminal, which folds wide tables (the plan's
ranking, bench's sweep) into unreadable columns when piped to a file or captured by CI. Off a
terminal we use a wide fixed width instead; ``COLUMNS`` still wins when set.
"""

from __future__ import annotations

import os

from rich.console import Console

PIPE_WIDTH = 160


def make_console(*, stderr: bool = False) -> Console:
    console = Console(stderr=stderr)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(stderr=stderr, width=PIPE_WIDTH)
    return console
