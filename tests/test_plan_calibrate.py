import pytest

from coderig.plan.calibrate import (
    fit_factors,
    fit_runs,
    leave_one_out,
    load_calibration,
    measurement_sigma,
    predict_run,
    validate,
)
from coderig.plan.catalog import load_catalog

# Documented bounds (BENCHMARKS.md, "coderig plan"). Leave-one-run-out, measured: 1 req/s p50
# -0.7 %, 8 req/s p50/p99 +3.9/+3.9 %, 32 req/s p50 -2.7 %, 32 req/s p99 -21.2 % (that p99 is
# the second-slowest of 160 requests; nothing with a published magnitude reproduces it, see
# calibration.toml); mean |error| 6.5 %.
LOO_MAX_ERROR_PCT = 22.0
LOO_MEAN_ERROR_PCT = 7.0
LOO_P50_MAX_ERROR_PCT = 7.0
# Validation runs (A100, 0.5B-32B, bf16 and int4; never fitted on), measured: bf16 7B/14B
# -5/-4 %, int4 7B/14B/32B -5/+2/+6 %, 0.5B/1.5B -5/-17 % (with every layer's kernel floor; the
# rest of 1.5B's gap fits vLLM 0.6.3's V0 per-step overhead).
VALIDATION_MAX_ERROR_PCT = 20.0
VALIDATION_7B_TO_32B_MAX_ERROR_PCT = 8.0


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


@pytest.fixture(scope="module")
def calibration():
    return load_calibration()


def test_published_runs_are_shipped_with_their_source(calibration):
    fitted = fit_runs(calibration.runs)
    assert len(fitted) == 3
    for run in fitted:
        assert run.source.startswith("published run: vLLM, Qwen2.5-Coder-7B bf16, H100 SXM")
        assert run.identical_prompts  # vegeta -body: one request body repeated
    assert {r.rate for r in fitted} == {1.0, 8.0, 32.0}
    validation = [r for r in calibration.runs if not r.use_for_fit]
    assert len(validation) >= 25
    for run in validation:
        assert run.source.startswith(
            ("Qwen2.5 Speed Benchmark", "Tenstorrent tt-inference-server GPU reference")
        )
        assert run.url.startswith("https://github.com/"), run.id
        assert len(run.date) == 10 and run.date[4] == run.date[7] == "-", run.id
        # never the fitted configuration: another GPU, model size, dtype or TP degree
        assert (run.gpu, run.model, run.dtype, run.tensor_parallel) != (
            "h100-sxm",
            "qwen2.5-coder-7b",
            "bf16",
            1,
        )


def test_a_p99_set_by_two_requests_weighs_less_than_a_median():
    assert measurement_sigma("latency_p50", 160) == pytest.approx(0.03)
    assert measurement_sigma("latency_p99", 160) == pytest.approx(0.03 * (10 / 1.6) ** 0.5)
    assert measurement_sigma("ttft_p90", 1000) == pytest.approx(0.03)


def test_shipped_factors_are_the_fit_of_the_shipped_runs(catalog, calibration):
    refit = fit_factors(catalog, calibration.runs, calibration.priors)
    for name, value in calibration.factors.to_dict().items():
        assert getattr(refit, name) == pytest.approx(value, rel=0.05), name


def test_shipped_factors_are_physical(calibration):
    f = calibration.factors
    assert 0.5 <= f.bandwidth_efficiency <= 0.95
    assert 0.5 <= f.compute_efficiency <= 0.9  # vidur's measured GEMMs: 0.74-0.97 of MAMF
    assert 0.1 <= f.step_overhead_ms <= 5
    assert f.request_overhead_ms < 100
    assert 5 <= f.frontend_us_per_token <= 100  # one V1 API server streams >= 12.8k tok/s


def test_in_sample_error_is_small(catalog, calibration):
    # In sample, measured: p50s -1.2 %, +0.2 %, +2.9 %; 8 req/s p99 +0.2 %; 32 req/s p99 -16.6 %.
    for run in fit_runs(calibration.runs):
        predicted = predict_run(catalog, calibration.factors, run)
        for metric, measured in run.measured.items():
            bound = 0.2 if metric == "latency_p99" and run.rate == 32 else 0.05
            assert abs(predicted[metric] / measured - 1) < bound, (run.id, metric)


def test_leave_one_out_error_is_printed_and_bounded(catalog, calibration, capsys):
    rows = leave_one_out(catalog, calibration.runs, calibration.priors)
    assert len(rows) == 5
    for row in rows:
        print(
            f"{row.run:15s} {row.metric:12s} {row.measured:.3f} {row.predicted:.3f} "
            f"{row.error_pct:+.1f}%"
        )
    assert "h100-7b-32rps" in capsys.readouterr().out
    errors = [abs(row.error_pct) for row in rows]
    assert max(errors) < LOO_MAX_ERROR_PCT
    assert sum(errors) / len(errors) < LOO_MEAN_ERROR_PCT
    assert max(abs(r.error_pct) for r in rows if r.metric == "latency_p50") < LOO_P50_MAX_ERROR_PCT


#: The first eight validation runs (Qwen2.5 Speed Benchmark, A100, batch 1), bounded as before.
FIRST_VALIDATION_RUNS = {
    "a100-0.5b-single",
    "a100-1.5b-single",
    "a100-7b-single",
    "a100-7b-single-6k",
    "a100-14b-single",
    "a100-7b-int4-single",
    "a100-14b-int4-single",
    "a100-32b-int4-single",
}
# All published runs never fitted on (`coderig plan validate`, BENCHMARKS.md), measured: p50
# |error| median 5.2 %, max 19.7 % (Qwen2.5-7B on an RTX 4090, whose kernel floor is not
# measured). By source: Qwen2.5 Speed Benchmark (A100, vLLM 0.6.3 V0) 7B-32B -9 .. +6 %, 72B on
# 4 GPUs -10 .. -12 %, 0.5-3B -5 .. -17 %; 72B on 2x H100 (vLLM V1 era) +3 .. +6 %; RTX 4090
# +14 .. +20 %. The bounds are issue 13's goal: median <= 10 %, max <= 25 %.
OUT_OF_SAMPLE_MEDIAN_PCT = 10.0
OUT_OF_SAMPLE_MAX_PCT = 25.0
H100_TP2_MAX_PCT = 8.0


def test_validation_runs_are_predicted_out_of_sample(catalog, calibration, capsys):
    rows = validate(catalog, calibration.factors, calibration.runs)
    assert len(rows) == len([r for r in calibration.runs if not r.use_for_fit])
    for row in rows:
        print(f"{row.run:26s} {row.measured:.3f} {row.predicted:.3f} {row.error_pct:+.1f}%")
    first = [row for row in rows if row.run in FIRST_VALIDATION_RUNS]
    assert len(first) == len(FIRST_VALIDATION_RUNS)
    for row in first:
        assert abs(row.error_pct) < VALIDATION_MAX_ERROR_PCT, row.run
        if not row.run.startswith(("a100-0.5b", "a100-1.5b")):
            assert abs(row.error_pct) < VALIDATION_7B_TO_32B_MAX_ERROR_PCT, row.run


def test_out_of_sample_error_over_every_published_run_is_bounded(catalog, calibration):
    from coderig.plan.validation import out_of_sample, summary

    rows = out_of_sample(catalog, calibration.factors, calibration.runs)
    result = summary(rows)
    assert result.runs == len(rows) >= 25
    assert result.median_abs_pct < OUT_OF_SAMPLE_MEDIAN_PCT
    assert result.max_abs_pct < OUT_OF_SAMPLE_MAX_PCT
    for row in rows:  # tensor parallelism on H100 (all-reduce terms) is the best-checked part
        if row.run.gpu == "h100-sxm" and row.run.tensor_parallel == 2:
            assert abs(row.error_pct) < H100_TP2_MAX_PCT, row.run.id


def test_prefix_caching_explains_the_flat_rise_from_1_to_8_rps(catalog, calibration):
    """Distinct 700-token prompts would make 8 req/s ~100 ms slower than 1 req/s."""
    from dataclasses import replace

    one, eight = fit_runs(calibration.runs)[:2]
    f = calibration.factors
    cached = (
        predict_run(catalog, f, eight)["latency_p50"] - predict_run(catalog, f, one)["latency_p50"]
    )
    distinct = (
        predict_run(catalog, f, replace(eight, identical_prompts=False))["latency_p50"]
        - predict_run(catalog, f, replace(one, identical_prompts=False))["latency_p50"]
    )
    assert 0.02 < cached < 0.06  # measured: +0.033 s
    assert distinct > 0.06


def test_fit_moves_towards_the_data(catalog, calibration):
    """A run twice as slow as the model predicts must pull the fit towards slower factors."""
    from dataclasses import replace

    run = fit_runs(calibration.runs)[0]
    slow = replace(run, measured={"latency_p50": 2 * run.measured["latency_p50"]})
    fitted = fit_factors(catalog, [slow], calibration.priors)
    assert predict_run(catalog, fitted, slow)["latency_p50"] > 1.5
