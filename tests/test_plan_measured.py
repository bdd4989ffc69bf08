import json

import pytest
from click.testing import CliRunner

from coderig.plan.cli import plan
from coderig.plan.measured import read_bench_file, run_from_bench


def write_bench(path, *, tags=None, n=40, latency=1.0, rate=8.0):
    header = {
        "version": 1,
        "url": "http://127.0.0.1:8000/v1/completions",
        "rate": rate,
        "duration": "5s",
        "arrival": "constant",
        "requests": n,
        "stream": True,
        "workload": {"prompt_tokens": 700, "max_tokens": 128},
        "tags": tags
        if tags is not None
        else {"gpu": "h100-sxm", "model": "qwen2.5-coder-7b", "replicas": "1"},
    }
    lines = [json.dumps(header)]
    for i in range(n):
        t = i / rate
        lines.append(
            json.dumps(
                {
                    "scheduled": t,
                    "sent": t + 0.001,
                    "first_token": t + 0.05,
                    "end": t + latency + 0.001 * (i % 5),
                    "status": 200,
                    "error": "",
                    "prompt_tokens": 702,
                    "completion_tokens": 128,
                }
            )
        )
    lines.append(
        json.dumps(
            {
                "scheduled": 9.0,
                "sent": 9.0,
                "first_token": None,
                "end": None,
                "status": 0,
                "error": "connection refused",
                "prompt_tokens": 0,
                "completion_tokens": 0,
            }
        )
    )
    path.write_text("\n".join(lines) + "\n\n")
    return path


def test_reader_finds_header_and_results(tmp_path):
    header, results = read_bench_file(write_bench(tmp_path / "a.jsonl"))
    assert header["tags"]["gpu"] == "h100-sxm"
    assert len(results) == 41


def test_run_from_bench_measures_percentiles_and_skips_errors(tmp_path):
    run = run_from_bench(write_bench(tmp_path / "a.jsonl", latency=1.2))
    assert (run.gpu, run.model, run.replicas, run.rate, run.duration) == (
        "h100-sxm",
        "qwen2.5-coder-7b",
        1,
        8.0,
        5.0,
    )
    assert run.prompt_tokens == 702 and run.output_tokens == 128
    assert run.measured["latency_p50"] == pytest.approx(1.2 + 0.002 - 0.001, abs=0.003)
    assert run.measured["ttft_p50"] == pytest.approx(0.049)


def test_flags_fill_missing_tags_and_missing_ones_are_explained(tmp_path):
    path = write_bench(tmp_path / "untagged.jsonl", tags={})
    with pytest.raises(ValueError, match="--tag gpu="):
        run_from_bench(path)
    run = run_from_bench(path, {"gpu": "a100-80gb", "model": "qwen2.5-coder-7b"})
    assert run.gpu == "a100-80gb"
    with pytest.raises(ValueError, match="no header"):
        (tmp_path / "x.jsonl").write_text('{"status": 200, "end": 1}\n')
        read_bench_file(tmp_path / "x.jsonl")


def test_calibrate_command_refits_with_bench_results(tmp_path):
    path = write_bench(tmp_path / "h100.jsonl", latency=1.0)
    result = CliRunner().invoke(plan, ["calibrate", str(path), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert len([r for r in data["runs"] if r["use_for_fit"]]) == 4
    assert {row["run"] for row in data["leave_one_out"]} >= {"h100.jsonl", "h100-7b-32rps"}
    assert data["validation"] and "validation error" in data["validation_summary"]


def test_prefix_caching_is_read_from_the_header_and_tags(tmp_path):
    generated = run_from_bench(write_bench(tmp_path / "gen.jsonl"))
    assert not generated.identical_prompts and generated.prefix_cache_hit == 0.0
    path = write_bench(tmp_path / "body.jsonl")
    lines = path.read_text().splitlines()
    header = json.loads(lines[0])
    header["workload"] = "body"  # coderig bench attack --body req.json: one body repeated
    header["prompt_tokens"], header["max_tokens"] = 700, 128
    path.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    assert run_from_bench(path).identical_prompts
    assert not run_from_bench(path, {"identical_prompts": False}).identical_prompts
    tagged = write_bench(
        tmp_path / "hit.jsonl",
        tags={"gpu": "h100-sxm", "model": "qwen2.5-coder-7b", "prefix_cache_hit": "0.6"},
    )
    assert run_from_bench(tagged).prefix_cache_hit == 0.6
    bad = write_bench(
        tmp_path / "bad.jsonl",
        tags={"gpu": "h100-sxm", "model": "qwen2.5-coder-7b", "prefix_cache_hit": "2"},
    )
    with pytest.raises(ValueError, match="prefix_cache_hit"):
        run_from_bench(bad)
