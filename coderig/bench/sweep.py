"""Attacks at several rates: a fixed list, or a search for the highest rate meeting a latency SLO.

Python API::

    from coderig.bench.sweep import run_sweep
    sweep = run_sweep(AttackConfig(url=..., rate=0, duration=10.0), rates=[1, 8, 32])
    sweep = run_sweep(config, slo=1.5, percentile=99)      # search instead of a list
    sweep.best_rate   # highest rate that met the SLO (search mode), else None

Each step is a full open-loop attack; its results are kept (and written to ``out_dir`` as
``rate-<r>.jsonl`` when given) so every point of the table can be re-reported later.

The search doubles the rate from ``min_rate`` until a step misses the SLO (or ``max_rate``),
then bisects between the last passing and first failing rate ``steps`` times. A step passes
when its latency percentile is within the SLO *and* at least ``min_success`` of requests
succeeded — a server that answers fast with errors does not meet an SLO.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coderig.bench.attack import AttackConfig, run_attack
from coderig.bench.metrics import Metrics
from coderig.bench.results import nan_to_null, write_results


@dataclass
class SweepStep:
    """One attack of the sweep."""

    rate: float
    header: dict
    results: list[dict]
    summary: Metrics
    meets_slo: bool | None = None
    path: str | None = None


@dataclass
class Sweep:
    steps: list[SweepStep] = field(default_factory=list)
    slo: float | None = None
    percentile: int = 99
    min_success: float = 0.99
    best_rate: float | None = None

    def by_rate(self) -> list[SweepStep]:
        return sorted(self.steps, key=lambda s: s.rate)

    def to_json(self) -> dict[str, Any]:
        return {
            "slo": self.slo,
            "percentile": self.percentile,
            "min_success": self.min_success,
            "best_rate": self.best_rate,
            "steps": [
                {
                    "rate": s.rate,
                    "meets_slo": s.meets_slo,
                    "path": s.path,
                    "summary": s.summary.to_dict(),
                }
                for s in self.by_rate()
            ],
        }


def _meets(summary: Metrics, slo: float, percentile: int, min_success: float) -> bool:
    lat = summary.latencies.percentile(percentile)
    success = summary.success
    return lat == lat and lat <= slo and success == success and success >= min_success


def run_sweep(
    base: AttackConfig,
    rates: list[float] | None = None,
    slo: float | None = None,
    percentile: int = 99,
    min_success: float = 0.99,
    min_rate: float = 1.0,
    max_rate: float = 1024.0,
    steps: int = 3,
    pause: float = 1.0,
    out_dir: str | Path | None = None,
    on_step: Callable[[SweepStep], None] | None = None,
    on_tick_factory: Callable[[float], Any] | None = None,
) -> Sweep:
    """Attack at each rate of ``rates``, or search for the best rate under ``slo`` seconds."""
    if rates is None and slo is None:
        raise ValueError("give rates to sweep or an SLO to search for")
    if percentile not in (50, 90, 95, 99):
        raise ValueError("percentile must be one of 50, 90, 95, 99")
    sweep = Sweep(slo=slo, percentile=percentile, min_success=min_success)
    out = Path(out_dir) if out_dir else None
    if out:
        out.mkdir(parents=True, exist_ok=True)

    def step(rate: float) -> SweepStep:
        if sweep.steps and pause > 0:
            time.sleep(pause)  # let the previous step's queue drain before the next one
        config = copy.deepcopy(base)
        config.rate = rate
        config.name = config.name or f"rate-{rate:g}"
        on_tick = on_tick_factory(rate) if on_tick_factory else None
        if on_tick is not None:
            with on_tick:
                header, results = run_attack(config, on_tick)
        else:
            header, results = run_attack(config)
        summary = Metrics.of(header, results)
        s = SweepStep(rate, header, results, summary)
        if slo is not None:
            s.meets_slo = _meets(summary, slo, percentile, min_success)
        if out:
            path = out / f"rate-{rate:g}.jsonl"
            with open(path, "w", encoding="utf-8") as f:
                write_results(f, header, results)
            s.path = str(path)
        sweep.steps.append(s)
        if on_step:
            on_step(s)
        return s

    if rates is not None:
        for rate in rates:
            step(rate)
        passing = [s.rate for s in sweep.steps if s.meets_slo]
        sweep.best_rate = max(passing) if passing else None
    else:
        sweep.best_rate = _search(step, min_rate, max_rate, steps)
    if out:
        (out / "sweep.json").write_text(json.dumps(nan_to_null(sweep.to_json()), indent=1))
    return sweep


def _search(
    step: Callable[[float], SweepStep], lo_rate: float, max_rate: float, steps: int
) -> float | None:
    """Exponential search then bisection; returns the highest rate seen to meet the SLO."""
    good: float | None = None
    bad: float | None = None
    rate = lo_rate
    while True:
        if step(rate).meets_slo:
            good = rate
            if rate >= max_rate:
                return good
            rate = min(rate * 2, max_rate)
        else:
            bad = rate
            break
    if good is None:
        return None
    for _ in range(steps):
        mid = round((good + bad) / 2, 2)
        if mid <= good or mid >= bad:
            break
        if step(mid).meets_slo:
            good = mid
        else:
            bad = mid
    return good
