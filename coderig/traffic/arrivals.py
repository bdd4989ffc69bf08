"""Send times, fixed before the load starts: that is what makes a load test open loop.

A closed-loop generator (send, wait for the answer, send the next) slows down exactly when the
server does, so it hides the queueing it should measure ("coordinated omission"). Here every
send time is decided up front from the rate alone; the attack only has to keep up with it, and
any failure to keep up is recorded as scheduling lag instead of silently lowering the load.

One function for both sides: ``coderig bench attack`` sends at these times and ``coderig plan``
simulates arrivals at the same times, so one seed is one stream of requests in both.
"""

from __future__ import annotations

import math

import numpy as np

ARRIVALS = ("constant", "poisson")


def send_times(
    rate: float,
    duration: float | None = None,
    requests: int | None = None,
    arrival: str = "constant",
    seed: int = 0,
) -> list[float]:
    """Offsets in seconds from the attack start at which each request is due.

    ``constant`` sends request *i* at ``i / rate`` (vegeta's default pacer), so ``5s`` at
    ``32`` req/s is 160 requests. ``poisson`` draws seeded exponential gaps of mean
    ``1 / rate`` (a memoryless stream of independent users), starting at 0. With both
    ``duration`` and ``requests`` the attack stops at whichever comes first.
    """
    if not rate > 0 or math.isinf(rate):
        raise ValueError(f"rate must be a positive number of requests per second, got {rate}")
    if duration is None and requests is None:
        raise ValueError("give a duration, a number of requests, or both")
    if duration is not None and duration <= 0:
        raise ValueError(f"duration must be positive, got {duration}")
    if requests is not None and requests < 0:
        raise ValueError(f"requests must be >= 0, got {requests}")
    if arrival not in ARRIVALS:
        raise ValueError(f"arrival must be one of {', '.join(ARRIVALS)}, got {arrival!r}")

    if arrival == "constant":
        # round() rather than ceil(): 5s at 32/s is exactly 160, not 161 from float noise.
        n = requests if duration is None else round(rate * duration)
        if requests is not None:
            n = min(n, requests)
        return [i / rate for i in range(n)]

    rng = np.random.default_rng(seed)
    if duration is None:
        assert requests is not None
        gaps = rng.exponential(1.0 / rate, size=max(requests - 1, 0))
        return [0.0, *np.cumsum(gaps).tolist()][:requests]
    times: list[float] = []
    t = 0.0
    limit = requests if requests is not None else math.inf
    while True:
        # Draw in blocks: one RNG call per request would dominate for long, fast attacks.
        for gap in rng.exponential(1.0 / rate, size=1024).tolist():
            if t >= duration or len(times) >= limit:
                return times
            times.append(t)
            t += gap
