"""Dollars: always-on, scaled to zero outside working hours, per developer, in seat licences.

Scale-to-zero is not free: every time the schedule switches on, each replica reloads its
weights and re-initialises the engine before serving, and those minutes are billed. The
cold-start time is data (``[cold_start]`` in engine.toml): weight bytes over a load bandwidth
plus a fixed engine start-up.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from coderig.on_hours import Schedule
from coderig.plan.catalog import GPU, Catalog, DType, Model

__all__ = ["Cost", "cold_start_seconds", "monthly_cost"]


@dataclass(frozen=True)
class Cost:
    gpus: int
    price_per_gpu_hour: float
    hours_per_month: float
    monthly_always_on: float
    scheduled_hours_per_month: float
    cold_starts_per_month: float
    cold_start_s: float
    monthly_scheduled: float
    developers: int | None
    per_developer: float | None
    per_developer_scheduled: float | None
    seat_price: float
    equivalent_seats: float
    equivalent_seats_scheduled: float

    def to_dict(self) -> dict:
        return asdict(self)

    def monthly(self, scheduled: bool) -> float:
        """The bill: with scale-to-zero outside the schedule, else always on."""
        return self.monthly_scheduled if scheduled else self.monthly_always_on


def cold_start_seconds(model: Model, dtype: DType, catalog: Catalog) -> float:
    """Weights from storage at ``load_gbps`` plus engine start-up (compile, CUDA graphs)."""
    cold = catalog.cold_start
    load_bps = float(cold.get("load_gbps", 1.0)) * 1e9
    return model.weight_bytes(dtype) / load_bps + float(cold.get("engine_init_s", 60.0))


def monthly_cost(
    gpu: GPU,
    gpus: int,
    *,
    schedule: Schedule,
    cold_start_s: float,
    hours_per_month: float = 720.0,
    developers: int | None = None,
    seat_price: float = 39.0,
) -> Cost:
    """Cost of ``gpus`` GPUs for a month; the month is ``hours_per_month`` long (720 = 30 days)."""
    price = gpu.price_per_hour
    always = gpus * price * hours_per_month
    days = hours_per_month / 24.0
    if schedule.is_always_on:
        on_hours, starts = hours_per_month, 0.0
    else:
        on_hours = schedule.hours_per_month(days_per_month=days)
        starts = schedule.starts_per_month(days_per_month=days)
    billed = on_hours + starts * cold_start_s / 3600.0
    scheduled = gpus * price * billed
    per_dev = always / developers if developers else None
    per_dev_sched = scheduled / developers if developers else None
    return Cost(
        gpus=gpus,
        price_per_gpu_hour=price,
        hours_per_month=hours_per_month,
        monthly_always_on=always,
        scheduled_hours_per_month=on_hours,
        cold_starts_per_month=starts,
        cold_start_s=cold_start_s,
        monthly_scheduled=scheduled,
        developers=developers,
        per_developer=per_dev,
        per_developer_scheduled=per_dev_sched,
        seat_price=seat_price,
        equivalent_seats=always / seat_price if seat_price > 0 else float("inf"),
        equivalent_seats_scheduled=scheduled / seat_price if seat_price > 0 else float("inf"),
    )
