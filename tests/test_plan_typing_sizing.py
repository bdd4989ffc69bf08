"""`coderig plan --developers N --workload typing`: sizing for the share of suggestions shown."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from coderig.cli import main
from coderig.on_hours import Schedule
from coderig.plan.calibrate import load_calibration
from coderig.plan.catalog import load_catalog
from coderig.plan.predict import Deployment
from coderig.plan.simulate import simulate_requests
from coderig.plan.typing_load import catalog_engine, catalog_typing_load, typing_outcome
from coderig.plan.typing_plan import plan_typing
from coderig.traffic.typing_team import TypingParams

CATALOG = load_catalog()
FACTORS = load_calibration().factors
MODEL = "qwen2.5-coder-7b"


@pytest.fixture(scope="module")
def team():
    """24 developers typing for 20 s: enough load that one small GPU cannot keep up."""
    return catalog_typing_load(24, 20.0, TypingParams.load(None), max_tokens=64, seed=3)


def shown(load, gpu: str, replicas: int, dtype: str = "bf16", tp: int = 1) -> float:
    engine = catalog_engine(CATALOG, FACTORS, Deployment(gpu, MODEL, dtype, tp, replicas))
    run = simulate_requests(engine.step, load.requests, replicas=replicas, **engine.limits)
    return typing_outcome(load, run).shown_share


def plan(load, **kwargs):
    args = dict(
        model=MODEL, gpus=["l4", "h100-sxm"], dtypes=["bf16"], output_tokens=64,
        schedule=Schedule.always(),
    )  # fmt: skip
    return plan_typing(CATALOG, FACTORS, load, **{**args, **kwargs})


def test_every_feasible_option_shows_the_target_share_and_the_cheapest_is_recommended(team):
    report = plan(team)
    feasible = [o for o in report.options if o.feasible]
    assert feasible, [o.reason for o in report.options]
    # the default target: 5 % below the best ceiling (a replica per developer, smallest TP)
    ceilings = [shown(team, gpu, team.developers) for gpu in ("l4", "h100-sxm")]
    assert report.target == pytest.approx(0.95 * max(ceilings))
    for option in feasible:
        assert option.outcome.shown_share >= report.target
        assert option.outcome.shown_share == shown(team, option.gpu, option.replicas)
    # an L4 is too slow for this team whatever its count
    (l4,) = [o for o in report.options if o.gpu == "l4"]
    assert not l4.feasible and l4.ceiling < report.target
    # ranked by the bill; the recommendation is the cheapest feasible option
    bills = [o.cost.monthly_always_on for o in feasible]
    assert bills == sorted(bills) and report.recommendation is feasible[0]


def test_a_bigger_team_needs_more_gpus_and_fewer_would_miss_the_target(team):
    bigger = catalog_typing_load(48, 20.0, TypingParams.load(None), max_tokens=64, seed=3)
    h100 = dict(gpus=["h100-sxm"], min_shown=0.185)
    small, big = plan(team, **h100).recommendation, plan(bigger, **h100).recommendation
    assert big.gpus > small.gpus and big.outcome.shown_share >= 0.185
    # no deployment with fewer GPUs, however split into replicas, shows as many
    for tp in (1, 2, 4, 8):
        if (big.gpus - 1) // tp >= 1:
            assert shown(bigger, "h100-sxm", (big.gpus - 1) // tp, tp=tp) < 0.185


def test_a_target_above_every_ceiling_is_infeasible_and_says_why(team):
    report = plan(team, min_shown=0.99)
    assert report.recommendation is None and report.max_lost is None
    for option in report.options:
        assert not option.feasible and "even with a replica per developer" in option.reason
        assert option.ceiling < 0.99


def test_plan_typing_cli_prints_a_ranked_table_and_json():
    runner = CliRunner()
    args = ["plan", "--developers", "12", "--workload", "typing", "--duration", "15s"]
    args += ["--gpus", "l4,h100-sxm", "--dtypes", "bf16,int4"]
    table = runner.invoke(main, args)
    assert table.exit_code == 0, table.output
    assert "of suggestions shown" in table.output and "Recommendation:" in table.output
    as_json = runner.invoke(main, [*args, "--json"])
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.output)
    assert data["workload"] == "typing" and data["output_tokens"] == 64  # bench typing's
    assert data["developers"] == 12 and data["rate"] > 0 and len(data["options"]) == 4
    best = data["recommendation"]
    assert best["predicted_shown_share"] >= data["target_shown_share"] > 0
    assert best["monthly"] == best["monthly_scheduled"]  # the default schedule scales to zero
    wrong = runner.invoke(main, ["plan", "--rate", "5", "--workload", "typing"])
    assert wrong.exit_code == 2 and "--developers" in wrong.output
