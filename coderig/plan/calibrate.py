"""Fit the six latency-model factors to measured runs, and say how wrong the model is.

A maximum-a-posteriori least-squares fit (scipy.optimize.least_squares) in log space: each
measured percentile contributes ``log(predicted / measured) / sigma`` (see
:func:`measurement_sigma`: a tail percentile set by a couple of requests counts less) and each
factor a log-normal prior ``log(value / prior) / sigma`` from ``calibration.toml``. The priors
are what keep three runs on one GPU from teaching the model something unphysical: a factor the
runs do not constrain stays near its physically expected value instead of absorbing noise.

The error we report is leave-one-run-out: for every run, refit on all the other runs and
predict the held-out one. A p50 and a p99 of the same run are held out together, since they
are two views of one experiment. Runs marked ``use_for_fit = false`` (published numbers on
other GPUs and model sizes) are never fitted on: :func:`validate` reports the fitted model's
error on them.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares

from coderig.plan.catalog import Catalog
from coderig.plan.predict import Deployment, predict
from coderig.plan.roofline import FACTOR_NAMES, Factors
from coderig.plan.simulate import Workload

__all__ = [
    "Run",
    "Prior",
    "Calibration",
    "load_calibration",
    "fit_factors",
    "predict_run",
    "leave_one_out",
    "validate",
    "fit_runs",
    "LooRow",
    "METRICS",
]

#: Relative scatter assumed for a well-sampled measured percentile (run-to-run noise of short
#: bench runs).
MEASUREMENT_SIGMA = 0.03
#: A percentile with fewer than this many requests beyond it is an order statistic of a
#: handful of requests; its scatter grows as 1/sqrt(requests beyond it).
TAIL_REQUESTS = 10.0


def measurement_sigma(metric: str, requests: float) -> float:
    """Relative scatter of ``metric`` measured over ``requests`` requests.

    The p99 of a 5 s run at 32 req/s (160 requests) is set by its two slowest requests, so
    one stop-the-world pause of the server (Python gen-2 garbage collections of 100-300 ms
    are documented for LLM servers under load: sglang PR #9241, vLLM PR #12287 and #24008
    freeze the heap to shorten them) moves it by tens of percent while the p50 does not
    move. Weighting a percentile by how many requests lie beyond it keeps such a tail from
    dragging the fit of the well-sampled percentiles.
    """
    q = {"p50": 0.5, "p90": 0.9, "p99": 0.99}[metric.rsplit("_", 1)[-1]]
    beyond = max(requests * (1.0 - q), 1e-9)
    return MEASUREMENT_SIGMA * math.sqrt(max(1.0, TAIL_REQUESTS / beyond))


METRICS = ("latency_p50", "latency_p90", "latency_p99", "ttft_p50", "ttft_p90", "ttft_p99")


@dataclass(frozen=True)
class Run:
    """A measured load test: a configuration, a load, and the percentiles it produced."""

    id: str
    gpu: str
    model: str
    rate: float
    duration: float
    prompt_tokens: int
    output_tokens: int
    measured: dict[str, float]
    dtype: str = "bf16"
    tensor_parallel: int = 1
    replicas: int = 1
    arrival: str = "constant"
    source: str = ""
    #: Fraction of each prompt served from vLLM's prefix cache (see ``Workload``).
    prefix_cache_hit: float = 0.0
    #: The load test repeated one request body: all but the first request hit the cache.
    identical_prompts: bool = False
    #: False: a validation run, shown with its out-of-sample error but never fitted on.
    use_for_fit: bool = True
    #: Where the numbers were published, and when (ISO date), for runs from public sources.
    url: str = ""
    date: str = ""

    @property
    def deployment(self) -> Deployment:
        return Deployment(self.gpu, self.model, self.dtype, self.tensor_parallel, self.replicas)

    @property
    def workload(self) -> Workload:
        return Workload(
            rate=self.rate,
            duration=self.duration,
            prompt_tokens=self.prompt_tokens,
            output_tokens=self.output_tokens,
            arrival=self.arrival,
            prefix_cache_hit=self.prefix_cache_hit,
            identical_prompts=self.identical_prompts,
        )

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Prior:
    value: float
    sigma: float
    min: float
    max: float


@dataclass
class Calibration:
    factors: Factors
    priors: dict[str, Prior]
    runs: list[Run] = field(default_factory=list)
    source: str = "coderig/plan/catalog/calibration.toml"


def _runs_from(table: Iterable[dict]) -> list[Run]:
    runs = []
    for entry in table:
        unknown = set(entry) - set(Run.__dataclass_fields__)
        if unknown:
            raise ValueError(f"calibration run {entry.get('id')!r}: unknown field(s) {unknown}")
        bad = set(entry.get("measured", {})) - set(METRICS)
        if bad:
            raise ValueError(f"calibration run {entry.get('id')!r}: unknown metric(s) {bad}")
        runs.append(Run(**entry))
    return runs


def load_calibration(path: str | Path | None = None) -> Calibration:
    """Factors, priors and published runs from the shipped ``calibration.toml`` (or ``path``)."""
    if path is None:
        text = (resources.files("coderig.plan") / "catalog" / "calibration.toml").read_text(
            encoding="utf-8"
        )
        source = "coderig/plan/catalog/calibration.toml"
    else:
        text = Path(path).read_text(encoding="utf-8")
        source = str(path)
    data = tomllib.loads(text)
    factors = Factors(**{k: float(v) for k, v in data.get("factors", {}).items()})
    priors = {name: Prior(**data["priors"][name]) for name in FACTOR_NAMES}
    return Calibration(factors, priors, _runs_from(data.get("runs", [])), source)


def fit_runs(runs: Iterable[Run]) -> list[Run]:
    """The runs the factors are fitted on (not the ``use_for_fit = false`` validation runs)."""
    return [run for run in runs if run.use_for_fit]


def predict_run(catalog: Catalog, factors: Factors, run: Run) -> dict[str, float]:
    result = predict(catalog, factors, run.deployment, run.workload).result
    return {metric: getattr(result, metric) for metric in run.measured}


def _unpack(x: np.ndarray) -> Factors:
    return Factors(**{name: float(math.exp(v)) for name, v in zip(FACTOR_NAMES, x, strict=True)})


def fit_factors(
    catalog: Catalog,
    runs: list[Run],
    priors: dict[str, Prior],
    *,
    start: Factors | None = None,
) -> Factors:
    """The MAP factors for ``runs`` (validation runs are skipped); with none, the priors."""
    runs = fit_runs(runs)
    x0 = np.array([math.log(getattr(start, n) if start else priors[n].value) for n in FACTOR_NAMES])
    lower = np.array([math.log(priors[n].min) for n in FACTOR_NAMES])
    upper = np.array([math.log(priors[n].max) for n in FACTOR_NAMES])
    x0 = np.clip(x0, lower + 1e-9, upper - 1e-9)
    prior_mu = np.array([math.log(priors[n].value) for n in FACTOR_NAMES])
    prior_sigma = np.array([priors[n].sigma for n in FACTOR_NAMES])
    if not runs:
        return _unpack(np.clip(prior_mu, lower, upper))

    def residuals(x: np.ndarray) -> np.ndarray:
        factors = _unpack(x)
        out = []
        for run in runs:
            predicted = predict_run(catalog, factors, run)
            for metric, measured in run.measured.items():
                value = predicted[metric]
                if not math.isfinite(value) or value <= 0:
                    value = 1e3 * measured
                sigma = measurement_sigma(metric, run.rate * run.duration)
                out.append(math.log(value / measured) / sigma)
        out.extend((x - prior_mu) / prior_sigma)
        return np.array(out)

    # The simulator is piecewise constant at the scale of one step, so finite differences
    # must straddle several steps: a 2 % step in log space does.
    best = least_squares(residuals, x0, bounds=(lower, upper), diff_step=0.02, x_scale=1.0)
    return _unpack(best.x)


@dataclass(frozen=True)
class LooRow:
    run: str
    metric: str
    measured: float
    predicted: float

    @property
    def error_pct(self) -> float:
        return 100.0 * (self.predicted - self.measured) / self.measured

    def to_dict(self) -> dict:
        return {**asdict(self), "error_pct": self.error_pct}


def leave_one_out(catalog: Catalog, runs: list[Run], priors: dict[str, Prior]) -> list[LooRow]:
    """Hold each run out, fit on the rest, predict it: the model's out-of-sample error.

    Only runs used for the fit take part; validation runs are reported by :func:`validate`.
    """
    runs = fit_runs(runs)
    rows = []
    for held in runs:
        rest = [run for run in runs if run is not held]
        factors = fit_factors(catalog, rest, priors)
        predicted = predict_run(catalog, factors, held)
        for metric, measured in held.measured.items():
            rows.append(LooRow(held.id, metric, measured, predicted[metric]))
    return rows


def validate(catalog: Catalog, factors: Factors, runs: Iterable[Run]) -> list[LooRow]:
    """Predicted against measured for the validation runs (``use_for_fit = false``)."""
    rows = []
    for run in runs:
        if run.use_for_fit:
            continue
        predicted = predict_run(catalog, factors, run)
        for metric, measured in run.measured.items():
            rows.append(LooRow(run.id, metric, measured, predicted[metric]))
    return rows
