import math

import pytest
from scipy import stats

from coderig.plan.traffic import normal_peak, poisson_quantile, traffic_for


@pytest.mark.parametrize("lam", [0.3, 1, 2.5, 7, 20, 55.5, 200, 1000, 5000])
@pytest.mark.parametrize("percentile", [50, 90, 99, 99.9, 99.99])
def test_poisson_quantile_matches_scipy(lam, percentile):
    assert poisson_quantile(lam, percentile) == int(stats.poisson.ppf(percentile / 100, lam))


def test_issue_example_20_per_second_peaks_at_35_not_33():
    traffic = traffic_for(developers=100, seconds_between_requests=5, percentile=99.9)
    assert traffic.average_rate == 20
    assert traffic.peak_rate == 35
    assert traffic.normal_peak_rate == pytest.approx(20 + 3 * math.sqrt(20))
    assert round(traffic.normal_peak_rate, 1) == 33.4


def test_normal_approximation_is_lambda_plus_three_sigma():
    assert normal_peak(100) == pytest.approx(130)
    assert normal_peak(16, sigmas=2) == pytest.approx(24)


def test_rate_overrides_team_size_and_bad_input_is_rejected():
    assert traffic_for(rate=3.5).average_rate == 3.5
    with pytest.raises(ValueError, match="--rate"):
        traffic_for()
    with pytest.raises(ValueError, match="percentile"):
        poisson_quantile(5, 100)
