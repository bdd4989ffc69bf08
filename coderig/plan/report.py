"""What ``coderig plan`` found, as one typed object that every output reads.

The planner (:mod:`coderig.plan.planner`) computes a :class:`PlanReport`; the table
(:mod:`coderig.plan.render`), the JSON document (:meth:`PlanReport.to_dict`) and the
price/performance plot (:mod:`coderig.plan.plot`) only render it. Keeping the numbers here and
the formatting there means the three outputs cannot disagree, and a test can check the plan
without parsing text.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from coderig.plan.calibrate import LooRow
from coderig.plan.roofline import Factors
from coderig.plan.simulate import Workload
from coderig.plan.sizing import Option
from coderig.plan.traffic import Traffic

__all__ = [
    "PlanReport",
    "PricePoint",
    "RankedOption",
    "Recommendation",
    "error_summary",
]


@dataclass(frozen=True)
class RankedOption:
    """One (GPU, dtype) row of the plan and what evidence stands behind its prediction."""

    option: Option
    #: Empty when a measured run backs this GPU and dtype; else says what is extrapolated.
    note: str = ""

    def to_dict(self) -> dict:
        return {**self.option.to_dict(), "note": self.note}


@dataclass(frozen=True)
class Recommendation:
    """The cheapest option meeting the SLO, with the bill it is ranked by."""

    option: Option
    #: Monthly dollars the ranking used: scale-to-zero when a schedule is set, else 24x7.
    monthly: float
    scheduled: bool
    schedule: str
    developers: int | None
    seat_price: float

    @property
    def per_developer(self) -> float | None:
        return self.monthly / self.developers if self.developers else None

    @property
    def seats_monthly(self) -> float | None:
        """What the same team pays for a SaaS seat each, per month."""
        return self.developers * self.seat_price if self.developers else None


@dataclass(frozen=True)
class PricePoint:
    """One point of the price/performance plot: a configuration, its bill and its latency.

    ``kind`` is ``"predicted"`` for the plan's options at the peak rate, ``"measured"`` for a
    measured run (at the load it was measured at, shown for scale).
    """

    label: str
    gpu: str
    dtype: str
    monthly_cost: float
    p50: float
    p99: float
    kind: str = "predicted"


@dataclass
class PlanReport:
    """Everything one ``coderig plan`` invocation decided, before any formatting."""

    traffic: Traffic
    slo_p99: float
    model: str
    workload: Workload
    schedule: str
    always_on: bool
    factors: Factors
    options: list[RankedOption]
    recommendation: Recommendation | None
    calibration_loo: list[LooRow]
    calibration_validation: list[LooRow]
    points: list[PricePoint]
    seat_price: float
    catalog_files: tuple[str, ...] = field(default_factory=tuple)

    @property
    def developers(self) -> int | None:
        return self.traffic.developers

    @property
    def feasible(self) -> list[Option]:
        return [row.option for row in self.options if row.option.feasible]

    def to_dict(self, plot: list[str] | None = None) -> dict:
        """The ``--json`` document (its keys are a contract with scripts that read it)."""
        from coderig.plan.render import recommendation_text

        w = self.workload
        return {
            "traffic": self.traffic.to_dict(),
            "slo_p99": self.slo_p99,
            "model": self.model,
            "workload": {
                "prompt_tokens": w.prompt_tokens,
                "output_tokens": w.output_tokens,
                "prefix_cache_hit": w.prefix_cache_hit,
                "duration": w.duration,
                "arrival": w.arrival,
                "rate": self.traffic.peak_rate,
            },
            "schedule": self.schedule,
            "factors": self.factors.to_dict(),
            "options": [row.to_dict() for row in self.options],
            "recommendation": recommendation_text(self),
            "calibration_loo": [r.to_dict() for r in self.calibration_loo],
            "calibration_summary": error_summary(self.calibration_loo, "leave-one-run-out"),
            "calibration_validation": [r.to_dict() for r in self.calibration_validation],
            "plot": plot,
            "catalog_files": list(self.catalog_files),
        }


def error_summary(rows: list[LooRow], kind: str) -> str:
    """One line: how wrong the latency model was on ``rows`` (mean and max |error|)."""
    if kind == "leave-one-run-out":
        if not rows:
            return "calibration error: no held-out measurements (need 2+ runs)"
        head = f"calibration error (leave-one-run-out over {len(rows)} measurements)"
    else:
        if not rows:
            return "validation: no validation runs"
        head = f"validation error (out of sample, {len(rows)} measurements)"
    errors = [abs(r.error_pct) for r in rows]
    return f"{head}: mean |error| {sum(errors) / len(errors):.1f}%, max {max(errors):.1f}%"
