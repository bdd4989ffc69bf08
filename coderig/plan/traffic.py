"""From team size to request rates: the average, and the peak a Poisson process reaches.

Completions are fired by many developers typing independently, so arrivals in a one-second
window are Poisson with mean ``lambda = developers / seconds_between_requests``. Sizing for the
mean would leave the service overloaded a good part of every minute; sizing for a high quantile
of the per-second count (``--percentile 99.9``) means only one second in a thousand sees more.
The exact quantile is computed from the Poisson CDF; the normal approximation
``lambda + 3 * sqrt(lambda)`` is printed beside it because people know it, not because we use it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import scipy.stats

__all__ = ["Traffic", "poisson_quantile", "normal_peak", "traffic_for"]


def poisson_quantile(lam: float, percentile: float) -> int:
    """Smallest ``k`` with ``P(N <= k) >= percentile/100`` for ``N ~ Poisson(lam)``."""
    if lam < 0:
        raise ValueError(f"rate must be >= 0, got {lam}")
    if not 0 < percentile < 100:
        raise ValueError(f"percentile must be in (0, 100), got {percentile}")
    if lam == 0:
        return 0
    return int(scipy.stats.poisson.ppf(percentile / 100.0, lam))


def normal_peak(lam: float, sigmas: float = 3.0) -> float:
    """The rule of thumb ``lambda + 3 * sqrt(lambda)``; shown for comparison only."""
    return lam + sigmas * math.sqrt(lam)


@dataclass(frozen=True)
class Traffic:
    developers: int | None
    seconds_between_requests: float | None
    average_rate: float
    percentile: float
    peak_rate: int
    normal_peak_rate: float

    def to_dict(self) -> dict:
        return asdict(self)


def traffic_for(
    *,
    developers: int | None = None,
    seconds_between_requests: float | None = None,
    rate: float | None = None,
    percentile: float = 99.9,
) -> Traffic:
    """The plan's traffic: ``rate`` if given, else ``developers / seconds_between_requests``."""
    if rate is None:
        if developers is None or seconds_between_requests is None:
            raise ValueError("give --rate, or --developers with --seconds-between-requests")
        if developers <= 0 or seconds_between_requests <= 0:
            raise ValueError("--developers and --seconds-between-requests must be positive")
        rate = developers / seconds_between_requests
    if rate <= 0:
        raise ValueError(f"--rate must be positive, got {rate}")
    return Traffic(
        developers=developers,
        seconds_between_requests=seconds_between_requests,
        average_rate=rate,
        percentile=percentile,
        peak_rate=poisson_quantile(rate, percentile),
        normal_peak_rate=normal_peak(rate),
    )
