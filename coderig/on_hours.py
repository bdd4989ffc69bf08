"""Weekly on-hours: the on/off windows in which a deployment should be up.

One syntax for everything that scales to zero: ``coderig serve --schedule "mon-fri 08:00-19:00"``
starts and stops replicas with it, and ``coderig plan --hours 9-18 --days mon-fri`` prices it.
A schedule is a set of intervals on the 7-day week (minute resolution), in the wall-clock time
of whatever datetime you ask about, so the same object answers "is it on now?", "when does it
next flip?" and "how many GPU-hours a month is that?".

Grammar (case-insensitive)::

    schedule := window (";" window)*
    window   := [days] hours
    days     := dayspec ("," dayspec)*          # omitted = every day
    dayspec  := day | day "-" day               # ranges may wrap: fri-mon
              | "daily" | "weekdays" | "weekends"
    day      := mon | tue | wed | thu | fri | sat | sun   (full names accepted)
    hours    := time "-" time                  # end <= start wraps past midnight
    time     := H | HH | H:MM | HH:MM           # 0..24; 24 or 24:00 only as an end

Examples: ``"mon-fri 08:00-19:00"``, ``"mon,wed 9-17"``, ``"mon-fri 9-12; sat 10-14"``,
``"fri 22:00-02:00"`` (Friday night into Saturday), ``"00:00-24:00"`` (always on).

Named ``on_hours`` rather than ``schedule`` so it is not mistaken for the attack's send times
(:mod:`coderig.traffic.arrivals`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = ["Schedule", "DAYS", "MINUTES_PER_WEEK", "DAYS_PER_MONTH"]

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MINUTES_PER_DAY = 24 * 60
MINUTES_PER_WEEK = 7 * MINUTES_PER_DAY
#: Average Gregorian month (365.2425 / 12), so a month of a weekly schedule is not 4 weeks.
DAYS_PER_MONTH = 30.436875

_TIME = re.compile(r"^(\d{1,2})(?::(\d{2}))?$")


def _day_index(token: str) -> int:
    token = token.strip().lower()
    if token in DAYS:
        return DAYS.index(token)
    if token in _FULL_DAYS:
        return _FULL_DAYS.index(token)
    raise ValueError(f"unknown day {token!r}: use mon, tue, wed, thu, fri, sat, sun")


def _parse_days(text: str) -> list[int]:
    """Day indexes (0 = Monday) named by ``mon-fri``, ``mon,wed``, ``weekdays``, ``daily``."""
    text = text.strip().lower()
    if not text:
        raise ValueError("empty day list: use e.g. mon-fri or mon,wed")
    days: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if part in ("daily", "everyday", "all", "*"):
            picked = list(range(7))
        elif part == "weekdays":
            picked = list(range(5))
        elif part == "weekends":
            picked = [5, 6]
        elif "-" in part:
            first, _, last = part.partition("-")
            start, end = _day_index(first), _day_index(last)
            picked = [(start + i) % 7 for i in range((end - start) % 7 + 1)]
        else:
            picked = [_day_index(part)]
        for day in picked:
            if day not in days:
                days.append(day)
    return days


def _parse_time(text: str, *, is_end: bool) -> int:
    """Minutes after midnight for ``9``, ``09``, ``9:30``, ``24:00`` (the last only as an end)."""
    match = _TIME.match(text.strip())
    if not match:
        raise ValueError(f"invalid time {text!r}: use H, HH, H:MM or HH:MM (e.g. 9, 08:00, 17:30)")
    hour, minute = int(match.group(1)), int(match.group(2) or 0)
    if minute > 59:
        raise ValueError(f"invalid time {text!r}: minutes must be 00-59")
    if hour > 24 or (hour == 24 and minute != 0):
        raise ValueError(f"invalid time {text!r}: hours must be 0-24")
    if hour == 24 and not is_end:
        raise ValueError(f"invalid time {text!r}: 24:00 can only end a window")
    return hour * 60 + minute


def _parse_hours(text: str) -> tuple[int, int]:
    start_text, sep, end_text = text.strip().partition("-")
    if not sep or not start_text.strip() or not end_text.strip():
        raise ValueError(f"invalid hours {text!r}: use START-END, e.g. 9-18 or 08:00-19:00")
    start = _parse_time(start_text, is_end=False)
    end = _parse_time(end_text, is_end=True)
    if start == end:
        raise ValueError(
            f"invalid hours {text!r}: start equals end; use 00:00-24:00 for the whole day"
        )
    return start, end


def _merge(intervals: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    merged: list[list[int]] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return tuple((s, e) for s, e in merged)


@dataclass(frozen=True)
class Schedule:
    """Active intervals on the week, as ``[start, end)`` minutes from Monday 00:00, merged.

    Build one with :meth:`parse` (the ``--schedule`` text), :meth:`from_hours_days` (plan's
    ``--hours``/``--days``) or :meth:`always`.
    """

    intervals: tuple[tuple[int, int], ...]
    text: str = ""

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def parse(cls, text: str) -> Schedule:
        """Read ``"mon-fri 08:00-19:00"``, ``"mon,wed 9-17"``, ``"mon-fri 9-12; sat 10-14"``."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError("empty schedule: use e.g. 'mon-fri 08:00-19:00'")
        spans: list[tuple[int, int]] = []
        for window in text.split(";"):
            window = window.strip()
            if not window:
                raise ValueError(f"empty window in schedule {text!r} (stray ';'?)")
            parts = window.split()
            if len(parts) == 1:
                days_text, hours_text = "daily", parts[0]
            elif len(parts) == 2:
                days_text, hours_text = parts
            else:
                raise ValueError(
                    f"invalid window {window!r}: use '[DAYS] START-END', e.g. 'mon-fri 9-18'"
                )
            try:
                days = _parse_days(days_text)
                start, end = _parse_hours(hours_text)
            except ValueError as exc:
                raise ValueError(f"in schedule {text!r}: {exc}") from None
            spans.extend(_spans_for(days, start, end))
        return cls(intervals=_week_intervals(spans), text=text.strip())

    @classmethod
    def from_hours_days(cls, hours: str = "0-24", days: str = "daily") -> Schedule:
        """``--hours 9-18 --days mon-fri`` as a schedule (the same as ``"mon-fri 9-18"``)."""
        return cls.parse(f"{days.strip() or 'daily'} {hours.strip()}")

    @classmethod
    def always(cls) -> Schedule:
        return cls(intervals=((0, MINUTES_PER_WEEK),), text="always")

    # -- queries ------------------------------------------------------------------------------
    @property
    def is_always_on(self) -> bool:
        return self.intervals == ((0, MINUTES_PER_WEEK),)

    def is_active(self, when: datetime) -> bool:
        """Whether ``when`` (its own wall clock) falls inside a window."""
        minute = _minute_of_week(when)
        return any(start <= minute < end for start, end in self.intervals)

    def hours_per_week(self) -> float:
        return sum(end - start for start, end in self.intervals) / 60.0

    def hours_per_month(self, days_per_month: float = DAYS_PER_MONTH) -> float:
        return self.hours_per_week() * days_per_month / 7.0

    def starts_per_week(self) -> int:
        """Off-to-on transitions a week: each is a cold start when scaling to zero."""
        if not self.intervals or self.is_always_on:
            return 0
        count = len(self.intervals)
        # A window ending Sunday 24:00 and one starting Monday 00:00 are one stretch.
        if self.intervals[0][0] == 0 and self.intervals[-1][1] == MINUTES_PER_WEEK:
            count -= 1
        return count

    def starts_per_month(self, days_per_month: float = DAYS_PER_MONTH) -> float:
        return self.starts_per_week() * days_per_month / 7.0

    def next_change(self, when: datetime) -> datetime | None:
        """The first instant after ``when`` at which :meth:`is_active` flips (None: never)."""
        if not self.intervals or self.is_always_on:
            return None
        flips = set()
        for start, end in self.intervals:
            flips.add(start % MINUTES_PER_WEEK)
            flips.add(end % MINUTES_PER_WEEK)
        if self.intervals[0][0] == 0 and self.intervals[-1][1] == MINUTES_PER_WEEK:
            flips.discard(0)  # Sunday-night window runs straight into Monday morning
        week_start = (when - timedelta(days=when.weekday())).replace(
            hour=0, minute=0, second=0, microsecond=0
        )
        now = _minute_of_week(when)
        for offset_weeks in (0, 1):
            for flip in sorted(flips):
                candidate = flip + offset_weeks * MINUTES_PER_WEEK
                if candidate > now:
                    return week_start + timedelta(minutes=candidate)
        return None  # pragma: no cover - a non-empty, non-full week always has a boundary

    def describe(self) -> str:
        if self.is_always_on:
            return "always on"
        return self.text or ", ".join(
            f"{_fmt_minute(s)}-{_fmt_minute(e)}" for s, e in self.intervals
        )


def _spans_for(days: list[int], start: int, end: int) -> list[tuple[int, int]]:
    spans = []
    for day in days:
        base = day * MINUTES_PER_DAY
        if end > start:
            spans.append((base + start, base + end))
        else:  # wraps past midnight into the next day
            spans.append((base + start, base + MINUTES_PER_DAY + end))
    return spans


def _week_intervals(spans: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Fold spans that run past Sunday midnight back onto Monday, then merge."""
    pieces: list[tuple[int, int]] = []
    for start, end in spans:
        if end <= MINUTES_PER_WEEK:
            pieces.append((start, end))
        else:
            pieces.append((start, MINUTES_PER_WEEK))
            pieces.append((0, end - MINUTES_PER_WEEK))
    return _merge(pieces)


def _minute_of_week(when: datetime) -> float:
    return (
        when.weekday() * MINUTES_PER_DAY
        + when.hour * 60
        + when.minute
        + (when.second + when.microsecond / 1e6) / 60.0
    )


def _fmt_minute(minute: int) -> str:
    day, rest = divmod(minute, MINUTES_PER_DAY)
    label = DAYS[day] if day < 7 else "mon+"
    return f"{label} {rest // 60:02d}:{rest % 60:02d}"
