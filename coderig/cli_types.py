"""Click parameter types shared by every ``coderig`` command, so a flag reads the same everywhere.

:data:`DURATION` takes what :func:`coderig.units.parse_duration` reads (``1.5s``, ``250ms``,
``2m``, ``1h30m``, a bare number of seconds) and gives float seconds; a bad value is a usage
error naming the flag. :data:`DURATION_OR_OFF` also takes ``off``/``none`` (None: no limit), for
limits that can be switched off.
"""

from __future__ import annotations

from typing import Any

import click

from coderig.units import parse_duration

__all__ = ["DURATION", "DURATION_OFF_IS_ZERO", "DURATION_OR_OFF", "Duration", "with_options"]


class Duration(click.ParamType):
    """Go-style durations (``5s``, ``250ms``, ``2m``), as vegeta's flags take them, in seconds.

    ``off_words`` are values that mean "no duration" and convert to None.
    """

    name = "duration"

    def __init__(self, off_words: tuple[str, ...] = (), off_value: float | None = None) -> None:
        self.off_words = off_words
        self.off_value = off_value

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, float | int):  # a default given as a number
            return float(value)
        if value in self.off_words:
            return self.off_value
        try:
            return parse_duration(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


DURATION = Duration()
DURATION_OR_OFF = Duration(off_words=("off", "none"))
#: ``off`` is a wait of 0 s: for waits whose absence (None) means "the default".
DURATION_OFF_IS_ZERO = Duration(off_words=("off", "none"), off_value=0.0)


def with_options(options, command):
    """``command`` with a group of ``click.option`` decorators applied, in the order listed
    (so ``--help`` shows them so), for flags several commands share."""
    for option in reversed(options):
        command = option(command)
    return command
