"""Send times: fixed up front, exact for constant pacing, exponential gaps for Poisson; one
stream for bench and plan."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from coderig.traffic.arrivals import send_times


def test_constant_pacing_is_i_over_rate_like_vegeta():
    times = send_times(32, duration=5.0)
    assert len(times) == 160
    assert times[:3] == [0.0, 1 / 32, 2 / 32]
    assert np.allclose(np.diff(times), 1 / 32)


def test_requests_and_duration_stop_at_whichever_comes_first():
    assert len(send_times(10, requests=7)) == 7
    assert len(send_times(10, duration=1.0, requests=7)) == 7
    assert len(send_times(10, duration=0.5, requests=70)) == 5
    assert len(send_times(10, duration=3.0, requests=7, arrival="poisson")) <= 7


def test_poisson_gaps_fit_an_exponential_for_a_fixed_seed():
    rate = 100.0
    times = send_times(rate, requests=3000, arrival="poisson", seed=7)
    gaps = np.diff(times)
    assert times[0] == 0.0 and len(times) == 3000
    assert gaps.mean() == pytest.approx(1 / rate, rel=0.05)
    # Kolmogorov-Smirnov against Exp(rate): must not be rejected...
    assert stats.kstest(gaps, "expon", args=(0, 1 / rate)).pvalue > 0.01
    # ...while the same check does reject evenly spaced sends (the test can fail).
    even = np.diff(send_times(rate, requests=3000))
    assert stats.kstest(even, "expon", args=(0, 1 / rate)).pvalue < 1e-6
    # coefficient of variation of an exponential is 1
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.08)


def test_poisson_is_reproducible_per_seed_and_bounded_by_duration():
    a = send_times(50, duration=10.0, arrival="poisson", seed=1)
    assert a == send_times(50, duration=10.0, arrival="poisson", seed=1)
    assert a != send_times(50, duration=10.0, arrival="poisson", seed=2)
    assert max(a) < 10.0
    assert len(a) == pytest.approx(500, rel=0.15)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(rate=0, duration=1.0),
        dict(rate=10),
        dict(rate=10, duration=-1.0),
        dict(rate=10, duration=1.0, arrival="bursty"),
    ],
)
def test_bad_schedules_are_refused(kwargs):
    with pytest.raises(ValueError):
        send_times(**kwargs)


def test_plan_simulates_the_stream_bench_sends_for_the_same_seed():
    from coderig.plan.simulate import arrival_times

    for arrival in ("constant", "poisson"):
        bench = send_times(20, duration=10.0, arrival=arrival, seed=5)
        assert arrival_times(20, 10.0, arrival, seed=5).tolist() == bench
