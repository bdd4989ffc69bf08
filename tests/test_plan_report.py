"""The planner returns a typed report; the table, the JSON and the plot only render it."""

import pytest
from rich.console import Console

from coderig.on_hours import Schedule
from coderig.plan.catalog import load_catalog
from coderig.plan.planner import calibrated, make_plan
from coderig.plan.render import print_plan, recommendation_text
from coderig.plan.report import PlanReport
from coderig.plan.simulate import Workload
from coderig.plan.traffic import traffic_for


@pytest.fixture(scope="module")
def report() -> PlanReport:
    catalog = load_catalog()
    return make_plan(
        catalog,
        calibrated(catalog, with_loo=False),
        traffic=traffic_for(developers=40, seconds_between_requests=5.0),
        model="qwen2.5-coder-7b",
        gpus=["h100-sxm", "l4", "a100-80gb"],
        dtypes=["bf16"],
        workload=Workload(rate=1.0, duration=10.0, arrival="poisson"),
        slo_p99=1.5,
        schedule=Schedule.from_hours_days("9-18", "mon-fri"),
    )


def test_the_report_simulates_the_peak_rate_not_the_workload_rate(report):
    assert report.workload.rate == report.traffic.peak_rate > 8


def test_the_recommendation_is_the_cheapest_feasible_option(report):
    feasible = report.feasible
    assert feasible and report.recommendation is not None
    assert report.recommendation.option is feasible[0]
    bills = [o.cost.monthly_scheduled for o in feasible]
    assert bills == sorted(bills)
    assert report.recommendation.monthly == pytest.approx(bills[0])
    assert report.recommendation.per_developer == pytest.approx(bills[0] / 40)


def test_plot_points_are_the_feasible_options_and_the_published_runs(report):
    predicted = [p for p in report.points if p.kind == "predicted"]
    assert [(p.gpu, p.dtype) for p in predicted] == [(o.gpu, o.dtype) for o in report.feasible]
    for point, option in zip(predicted, report.feasible, strict=True):
        assert point.monthly_cost == option.cost.monthly_always_on
        assert point.p99 == option.result.latency_p99
    measured = [p for p in report.points if p.kind == "measured"]
    assert measured and all(p.gpu == "h100-sxm" for p in measured)


def test_json_and_table_render_the_same_report(report):
    data = report.to_dict(plot=None)
    assert data["recommendation"] == recommendation_text(report)
    assert [o["gpu"] for o in data["options"]] == [r.option.gpu for r in report.options]
    console = Console(width=200, record=True)
    print_plan(console, report)
    text = console.export_text()
    assert recommendation_text(report).split(" — ")[0] in text
    for ranked in report.options:
        assert ranked.option.gpu in text


def test_no_feasible_option_gives_no_recommendation():
    catalog = load_catalog()
    report = make_plan(
        catalog,
        calibrated(catalog, with_loo=False),
        traffic=traffic_for(rate=5.0),
        model="qwen2.5-coder-7b",
        gpus=["l4"],
        dtypes=["bf16"],
        workload=Workload(rate=1.0, duration=5.0),
        slo_p99=0.2,
        schedule=Schedule.always(),
    )
    assert report.recommendation is None
    assert all(p.kind == "measured" for p in report.points)
    assert recommendation_text(report).startswith("No catalog configuration meets")
