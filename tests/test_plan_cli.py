import json

from click.testing import CliRunner

from coderig.cli import main
from coderig.plan.calibrate import load_calibration
from coderig.plan.cli import evidence_note


def run(*args):
    result = CliRunner().invoke(main, ["plan", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_evidence_note_names_what_was_never_measured():
    runs = load_calibration().runs
    assert evidence_note("h100-sxm", "bf16", runs) == ""
    assert evidence_note("a100-80gb", "int4", runs) == ""
    assert evidence_note("h100-sxm", "fp8", runs) == "extrapolated: no measured fp8 run on this GPU"
    assert evidence_note("mi300x", "bf16", runs) == "extrapolated: no measured run on this GPU"


def test_predict_as_the_issue_spells_it():
    out = run(
        "predict",
        "--gpu",
        "h100-sxm",
        "--model",
        "qwen2.5-coder-7b",
        "--rate",
        "32",
        "--duration",
        "5s",
        "--arrival",
        "constant",
        "--prompt-tokens",
        "700",
        "--output-tokens",
        "128",
        "--json",
    )
    data = json.loads(out)
    for key in ("latency_p50", "latency_p90", "latency_p99", "ttft_p50", "ttft_p90", "ttft_p99"):
        assert 0 < data[key] < 5, key
    assert data["requests"] == 160
    assert data["latency_p50"] <= data["latency_p90"] <= data["latency_p99"]


def test_predict_human_output_and_bad_ids():
    assert "latency" in run("predict", "--gpu", "l40s", "--rate", "4", "--replicas", "2")
    result = CliRunner().invoke(main, ["plan", "predict", "--gpu", "H100", "--rate", "1"])
    assert result.exit_code != 0 and "unknown GPU" in result.output


def test_plan_ranks_hardware_writes_the_plot_and_reports_calibration(tmp_path):
    out = run(
        "--developers",
        "100",
        "--slo-p99",
        "1.5s",
        "--gpus",
        "h100-sxm,l4,a100-80gb",
        "--dtypes",
        "bf16",
        "--duration",
        "20s",
        "--hours",
        "9-18",
        "--days",
        "mon-fri",
        "--plot-dir",
        str(tmp_path),
        "--json",
    )
    data = json.loads(out)
    assert data["traffic"]["peak_rate"] == 35
    assert round(data["traffic"]["normal_peak_rate"], 1) == 33.4
    options = data["options"]
    assert [o["gpu"] for o in options if o["feasible"]][0] == "h100-sxm"
    l4 = next(o for o in options if o["gpu"] == "l4")
    assert not l4["feasible"] and "idle" in l4["reason"]
    # Rows say when no measured run backs them: H100 bf16 has three, L4 none.
    assert next(o for o in options if o["gpu"] == "h100-sxm")["note"] == ""
    assert l4["note"] == "extrapolated: no measured run on this GPU"
    best = options[0]
    assert best["predicted_latency_p99"] <= 1.5
    assert best["monthly_scheduled"] < best["monthly_always_on"]
    assert "Recommendation" in data["recommendation"]
    assert len(data["calibration_loo"]) == 5
    assert (tmp_path / "price-performance.png").stat().st_size > 10_000
    page = (tmp_path / "price-performance.html").read_text()
    assert "data:image/png;base64," in page and "<script" not in page and "http" not in page


def test_plan_human_output(tmp_path):
    out = run(
        "--developers",
        "100",
        "--gpus",
        "h100-sxm",
        "--dtypes",
        "bf16",
        "--duration",
        "10s",
        "--plot-dir",
        str(tmp_path),
    )
    assert "35 req/s" in out and "33.4" in out
    assert "Recommendation" in out and "leave-one-run-out" in out


def test_plan_human_output_keeps_the_quantisation_caveat(tmp_path):
    out = run(
        "--developers",
        "100",
        "--gpus",
        "h100-sxm",
        "--dtypes",
        "fp8",
        "--duration",
        "10s",
        "--no-plot",
    )
    assert "[fp8 is quantised: check completion quality]" in " ".join(out.split())


def test_prefix_cache_hit_option_reaches_the_simulation():
    args = ["predict", "--gpu", "h100-sxm", "--rate", "32", "--json"]
    distinct = json.loads(run(*args))
    cached = json.loads(run(*args, "--prefix-cache-hit", "1"))
    same = json.loads(run(*args, "--identical-prompts"))
    assert cached["workload_prefix_cache_hit"] == 1.0 and same["workload_identical_prompts"]
    assert cached["latency_p50"] < distinct["latency_p50"] - 0.1
    assert same["latency_p50"] < distinct["latency_p50"] - 0.1
    result = CliRunner().invoke(main, ["plan", *args, "--prefix-cache-hit", "1.5"])
    assert result.exit_code != 0 and "between 0 and 1" in result.output


def test_fit_and_catalog_commands():
    data = json.loads(
        run(
            "fit",
            "--model",
            "qwen2.5-coder-32b",
            "--gpus",
            "l40s,h100-sxm",
            "--dtypes",
            "bf16",
            "--json",
        )
    )
    smallest = {row["tp1"]["gpu"]: row["smallest_tp"]["tensor_parallel"] for row in data["fits"]}
    assert smallest == {"l40s": 2, "h100-sxm": 1}
    assert "Will it fit" in run("fit")
    catalog = json.loads(run("catalog", "--json"))
    assert "mi300x" in catalog["gpus"] and "qwen2.5-coder-32b" in catalog["models"]
    assert "Models" in run("catalog")


def test_validate_prints_the_out_of_sample_table_benchmarks_quotes():
    data = json.loads(run("validate", "--json"))
    assert data["summary"]["runs"] == len(data["rows"]) >= 25
    assert all(row["url"] and row["date"] for row in data["rows"])
    table = run("validate", "--markdown")
    assert table.count("\n| ") == len(data["rows"]) + 1  # header separator + one per row
    assert f"median {data['summary']['median_abs_pct']:.1f}%" in table
    assert "out-of-sample p50 error" in run("validate")


def test_predict_says_when_requests_were_preempted_for_kv_space():
    # 160 distinct 700-token prompts need more KV than a 24 GB card holds after the weights
    out = run("predict", "--gpu", "rtx-4090", "--rate", "32")
    assert "preempted for KV space" in out
    data = json.loads(run("predict", "--gpu", "rtx-4090", "--rate", "32", "--json"))
    assert data["preemptions"] > 0 and data["completed"] == data["requests"] == 160
    quiet = run("predict", "--gpu", "h100-sxm", "--rate", "8")
    assert "preempted" not in quiet
