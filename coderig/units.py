"""Human units on the command line: durations like ``5s``/``2m``/``1h30m`` and sizes like ``1MiB``.

Shared by serve (timeouts, idle shutdown), bench (attack duration, histogram buckets) and
plan (SLOs), so every command reads ``1.5s`` the same way.
"""

from __future__ import annotations

import re

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DURATION_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def parse_duration(text: str | float | int) -> float:
    """Seconds in a Go-style duration (``1.5s``, ``250ms``, ``2m``, ``1h30m``).

    A bare number is seconds."""
    if isinstance(text, int | float):
        return float(text)
    raw = text.strip()
    if not raw:
        raise ValueError("empty duration")
    try:
        return float(raw)
    except ValueError:
        pass
    pos = 0
    total = 0.0
    for match in _DURATION_PART.finditer(raw):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(raw) or pos == 0:
        raise ValueError(f"invalid duration {text!r}: use forms like 500ms, 5s, 2m, 1h30m")
    return total


def format_duration(seconds: float) -> str:
    """Go-like rendering (``1.234s``, ``12.5ms``, ``850µs``), as vegeta prints latencies."""
    if seconds != seconds:  # NaN
        return "NaN"
    if seconds == 0:
        return "0s"
    sign = "-" if seconds < 0 else ""
    s = abs(seconds)
    if s < 1e-6:
        return f"{sign}{s * 1e9:.0f}ns"
    if s < 1e-3:
        return f"{sign}{s * 1e6:.3f}µs"
    if s < 1:
        return f"{sign}{s * 1e3:.3f}ms"
    if s < 60:
        return f"{sign}{s:.3f}s"
    minutes, rest = divmod(s, 60)
    if minutes < 60:
        return f"{sign}{int(minutes)}m{rest:.3f}s"
    hours, minutes = divmod(minutes, 60)
    return f"{sign}{int(hours)}h{int(minutes)}m{rest:.3f}s"


_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1024**3,
}


def parse_size(text: str | int) -> int:
    """Bytes in ``1MiB``, ``512kb``, ``1000``."""
    if isinstance(text, int):
        return text
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if not match or match.group(2).lower() not in _SIZE_UNITS:
        raise ValueError(f"invalid size {text!r}: use forms like 1MiB, 512KB, 1000")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])


def go_duration_string(nanoseconds: int) -> str:
    """Exactly Go's ``time.Duration.String()`` for an integer number of nanoseconds.

    ``vegeta report`` prints durations this way (``1.268625ms``, ``10.094965987s``, ``2m3s``);
    matching it byte for byte lets scripts written against vegeta's text parse ours.
    """
    ns = int(nanoseconds)
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    u = abs(ns)
    if u < 1_000_000_000:
        if u < 1_000:
            return f"{sign}{u}ns"
        if u < 1_000_000:
            return f"{sign}{_go_frac(u, 3)}µs"
        return f"{sign}{_go_frac(u, 6)}ms"
    whole_seconds, frac = divmod(u, 1_000_000_000)
    seconds_text = str(whole_seconds % 60)
    if frac:
        seconds_text += "." + f"{frac:09d}".rstrip("0")
    out = seconds_text + "s"
    minutes = whole_seconds // 60
    if minutes:
        out = f"{minutes % 60}m" + out
        hours = minutes // 60
        if hours:
            out = f"{hours}h" + out
    return sign + out


def _go_frac(value: int, precision: int) -> str:
    """``value / 10**precision`` with trailing zeros (and a bare point) dropped, as Go's fmtFrac."""
    whole, frac = divmod(value, 10**precision)
    if not frac:
        return str(whole)
    return f"{whole}." + f"{frac:0{precision}d}".rstrip("0")


_ROUND_STEPS_NS = (
    (3_600_000_000_000, 60_000_000_000),  # >= 1h: round to the minute
    (60_000_000_000, 1_000_000_000),  # >= 1m: to the second
    (1_000_000_000, 1_000_000),  # >= 1s: to the millisecond
    (1_000_000, 1_000),  # >= 1ms: to the microsecond
    (1_000, 1),  # >= 1µs: to the nanosecond
)


def go_round(nanoseconds: int, multiple: int) -> int:
    """Go's ``Duration.Round``: to the nearest multiple, halves away from zero."""
    if multiple <= 0:
        return nanoseconds
    r = abs(nanoseconds) % multiple
    magnitude = abs(nanoseconds) - r if r + r < multiple else abs(nanoseconds) + multiple - r
    return magnitude if nanoseconds >= 0 else -magnitude


def vegeta_duration(seconds: float) -> str:
    """A duration as ``vegeta report -type=text`` prints it: rounded to the next finer unit.

    vegeta rounds each duration one unit below its magnitude (``1.2686251ms`` -> ``1.269ms``,
    ``10.0949s`` -> ``10.095s``) before Go formats it; NaN (no sample) prints as ``NaN``.
    """
    if seconds != seconds:
        return "NaN"
    ns = round(seconds * 1e9)
    for threshold, multiple in _ROUND_STEPS_NS:
        if abs(ns) >= threshold:
            ns = go_round(ns, multiple)
            break
    return go_duration_string(ns)
