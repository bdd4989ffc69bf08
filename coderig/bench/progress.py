"""Attack progress on standard error: a rich bar on a terminal, nothing otherwise.

Refreshed from the attack's own 250 ms tick (``auto_refresh=False``), never per request and
never from a thread, so drawing it cannot steal time from the sends it reports on.
"""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class AttackProgress:
    """Callable ``on_tick`` for :func:`coderig.bench.attack.attack`."""

    def __init__(self, enabled: bool | None = None, label: str = "attack"):
        self.console = Console(stderr=True)
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.label = label
        self._progress: Progress | None = None
        self._task: Any = None

    def __enter__(self) -> AttackProgress:
        if self.enabled:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn(
                    "sent {task.fields[sent]}  in flight {task.fields[inflight]}"
                    "  not sent {task.fields[not_sent]}"
                ),
                TimeElapsedColumn(),
                console=self.console,
                auto_refresh=False,
                transient=False,
            )
            self._progress.start()
        return self

    def __call__(self, state: Any) -> None:
        if self._progress is None:
            return
        if self._task is None:
            self._task = self._progress.add_task(
                self.label, total=len(state.results), sent=0, inflight=0, not_sent=0
            )
        self._progress.update(
            self._task,
            completed=state.done + state.not_sent,
            sent=state.sent,
            inflight=state.inflight,
            not_sent=state.not_sent,
        )
        self._progress.refresh()

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()


class TypingProgress(AttackProgress):
    """Callable ``on_tick`` for :func:`coderig.bench.typing.typing_run`: requests done of those
    scripted, and how they ended so far."""

    def __enter__(self) -> TypingProgress:
        if self.enabled:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn(
                    "shown {task.fields[shown]}  cancelled {task.fields[cancelled]}"
                    "  errors {task.fields[error]}  in flight {task.fields[inflight]}"
                ),
                TimeElapsedColumn(),
                console=self.console,
                auto_refresh=False,
                transient=False,
            )
            self._progress.start()
        return self

    def __call__(self, state: Any) -> None:
        if self._progress is None:
            return
        if self._task is None:
            self._task = self._progress.add_task(
                self.label, total=len(state.results), inflight=0, **dict.fromkeys(state.counts, 0)
            )
        self._progress.update(
            self._task, completed=state.done, inflight=state.inflight, **state.counts
        )
        self._progress.refresh()
