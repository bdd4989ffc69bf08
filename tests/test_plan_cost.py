import pytest

from coderig.on_hours import Schedule
from coderig.plan.catalog import load_catalog
from coderig.plan.cost import cold_start_seconds, monthly_cost


def test_always_on_cost_per_developer_and_seats():
    gpu = load_catalog().gpu("h100-sxm")
    cost = monthly_cost(
        gpu, 2, schedule=Schedule.always(), cold_start_s=120, developers=100, seat_price=39
    )
    assert cost.monthly_always_on == pytest.approx(2 * gpu.price_per_hour * 720)
    assert cost.monthly_scheduled == cost.monthly_always_on  # nothing to scale down
    assert cost.per_developer == pytest.approx(cost.monthly_always_on / 100)
    assert cost.equivalent_seats == pytest.approx(cost.monthly_always_on / 39)


def test_scale_to_zero_bills_working_hours_plus_one_cold_start_a_day():
    catalog = load_catalog()
    gpu = catalog.gpu("l40s")
    schedule = Schedule.from_hours_days("9-18", "mon-fri")
    cold = cold_start_seconds(catalog.model("qwen2.5-coder-7b"), catalog.dtype("bf16"), catalog)
    assert cold == pytest.approx(15.23 + 60, rel=0.01)  # 15.2 GB at 1 GB/s + engine start
    cost = monthly_cost(gpu, 3, schedule=schedule, cold_start_s=cold, hours_per_month=720)
    on_hours = 45 * 30 / 7
    starts = 5 * 30 / 7
    assert cost.scheduled_hours_per_month == pytest.approx(on_hours)
    assert cost.cold_starts_per_month == pytest.approx(starts)
    assert cost.monthly_scheduled == pytest.approx(
        3 * gpu.price_per_hour * (on_hours + starts * cold / 3600)
    )
    assert cost.monthly_scheduled < 0.3 * cost.monthly_always_on
