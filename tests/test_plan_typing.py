"""Planning for a typing team: requests given one by one, cancelled at the next keystroke,
continuing the developer's previous prompt -- built from the script bench typing sends."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from coderig.bench.typing import TypingConfig, plan_typing
from coderig.cli import main
from coderig.models import embedded_model_path
from coderig.plan.local import local_step_model
from coderig.plan.simulate import Requests, Workload, simulate, simulate_requests
from coderig.plan.typing_load import Engine, Window, predict_typing, typing_load, typing_outcome
from coderig.traffic.typing_team import TypingParams
from tests.test_plan_local import PROBE

STEP = local_step_model(PROBE)
LIMITS = dict(max_batched_tokens=512, max_seqs=1, kv_capacity_tokens=4096, block_size=1)


def requests(arrival, prompt, output, cancel=None, cached=None, parent=None) -> Requests:
    n = len(arrival)
    return Requests(
        arrival=np.asarray(arrival, float),
        prompt=np.asarray(prompt),
        cached=np.asarray(cached if cached is not None else [0] * n),
        output=np.asarray(output),
        cancel=None if cancel is None else np.asarray(cancel, float),
        parent=None if parent is None else np.asarray(parent),
    )


def test_the_uniform_attack_is_the_same_run_given_request_by_request():
    workload = Workload(rate=2, duration=10, prompt_tokens=200, output_tokens=20, arrival="poisson")
    summary = simulate(STEP, workload, **LIMITS)
    n = summary.requests
    given = simulate_requests(
        STEP, requests(_arrivals(workload), [200] * n, [20] * n), **LIMITS
    ).summary(10)
    assert given == summary


def _arrivals(workload):
    from coderig.plan.simulate import arrival_times

    return arrival_times(workload.rate, workload.duration, workload.arrival, workload.seed)


def test_a_cancelled_request_leaves_its_slot_to_the_next():
    # one slot; a long answer is abandoned at 0.5 s, and the request queued behind it runs then
    load = requests([0.0, 0.1], [64, 64], [2000, 8])
    kept = simulate_requests(STEP, load, **LIMITS)
    load = requests([0.0, 0.1], [64, 64], [2000, 8], cancel=[0.5, np.inf])
    left = simulate_requests(STEP, load, **LIMITS)
    assert list(left.cancelled) == [True, False] and not kept.cancelled.any()
    alone = STEP.unloaded_latency(64, 8, 512)[1]
    assert left.end[1] == pytest.approx(0.5 + alone - STEP.request_overhead_s, abs=0.05)
    assert kept.end[1] > kept.end[0] > 10 * left.end[1]
    # the cancelled one is not counted among the answered
    assert left.summary(1).completed == 1


def test_an_answer_that_lands_after_the_keystroke_is_not_shown():
    alone = STEP.unloaded_latency(64, 8, 512)[1]
    late = simulate_requests(STEP, requests([0.0], [64], [8], cancel=[alone * 0.9]), **LIMITS)
    in_time = simulate_requests(STEP, requests([0.0], [64], [8], cancel=[alone * 1.1]), **LIMITS)
    assert late.cancelled[0] and not in_time.cancelled[0]


def test_a_continued_prompt_finds_what_its_parent_computed():
    # the second prompt shares 300 of its 310 tokens with the first; prompts are computed 64
    # tokens a step, so a cancellation lands between chunks
    limits = dict(LIMITS, max_batched_tokens=64)

    def ttft(first_cancel: float) -> float:
        load = requests(
            [0.0, 5.0], [300, 310], [4, 4], cancel=[first_cancel, np.inf],
            cached=[0, 300], parent=[-1, 0],
        )  # fmt: skip
        return float(simulate_requests(STEP, load, **limits).ttft[1])

    full = ttft(np.inf)  # the parent was prefilled whole: 10 tokens to compute
    cut = ttft(0.3)  # cancelled 0.3 s into its prefill: only its first chunks are cached
    nothing = STEP.unloaded_latency(310, 4, 64)[0]
    assert full < cut < nothing
    assert full == pytest.approx(STEP.unloaded_latency(310, 4, 64, cached=300)[0], rel=1e-6)


def test_a_run_counts_the_prompt_tokens_computed_and_the_steps_taken():
    # what a real engine's counters give (llama-server's prompt_tokens_total, n_decode_total),
    # so a run can be checked against them: the parent computes 300 tokens; the child finds
    # 300 of its 310 cached and computes 10; 64 tokens a step
    load = requests([0.0, 5.0], [300, 310], [4, 4], cached=[0, 300], parent=[-1, 0])
    run = simulate_requests(STEP, load, **dict(LIMITS, max_batched_tokens=64))
    assert run.prefilled == 300 + 10
    assert run.steps == (5 + 3) + (1 + 3)  # prompt chunks (the last one samples), then decodes
    busy = (run.end[0] - 0.0) + (run.end[1] - 5.0)  # never idle while a request runs
    assert run.busy == pytest.approx(busy, rel=1e-9)


def test_a_cold_prompt_waits_for_the_decodes_it_would_stall():
    # two slots: a warm request decodes 40 tokens; a cold 400-token prompt arrives just after.
    # Without a hold its prefill shares the warm one's steps; held, it starts when the warm
    # one is done, so the warm one ends as if alone, and the cold one ends later.
    limits = dict(LIMITS, max_seqs=2)
    load = requests([0.0, 0.05], [20, 400], [40, 8], cached=[16, 0])
    free = simulate_requests(STEP, load, **limits)
    held = simulate_requests(STEP, load, **limits, cold_tokens=64, cold_hold=10.0)
    alone = simulate_requests(STEP, requests([0.0], [20], [40], cached=[16]), **limits)
    assert held.end[0] == pytest.approx(alone.end[0], rel=1e-9)
    assert held.end[0] < free.end[0]
    assert held.first[1] > held.end[0] and held.end[1] > free.end[1]
    # the hold is bounded: past it the cold one starts beside the running decode
    short = simulate_requests(STEP, load, **limits, cold_tokens=64, cold_hold=0.1)
    assert short.end[0] > alone.end[0] and short.end[1] < held.end[1]
    # a warm prompt is never held
    warm = requests([0.0, 0.05], [20, 400], [40, 8], cached=[16, 390])
    assert (
        simulate_requests(STEP, warm, **limits, cold_tokens=64, cold_hold=10.0).first[1]
        == (simulate_requests(STEP, warm, **limits).first[1])
    )


def test_a_request_cancelled_before_it_is_sent_is_refused():
    with pytest.raises(ValueError, match="before it is sent"):
        simulate_requests(STEP, requests([1.0], [10], [2], cancel=[1.0]), **LIMITS)


BRISK = TypingParams.defaults()
ROOT = Path(__file__).resolve().parents[1]


def count(text: str) -> int:
    return max(1, len(text) // 3)


def test_the_plan_types_the_script_bench_typing_sends():
    config = TypingConfig(url="http://127.0.0.1:9", developers=6, duration=40.0, seed=5)
    script = plan_typing(config).script
    load = typing_load(6, 40.0, config.typing_params(), max_tokens=16, count_tokens=count, seed=5)
    sent = sorted(script.requests, key=lambda r: r.send)
    assert list(load.requests.arrival) == [r.send for r in sent]
    assert list(load.requests.cancel) == [np.inf if r.cancel is None else r.cancel for r in sent]
    # each request continues its developer's previous one
    for i, j in enumerate(load.requests.parent):
        if j >= 0:
            assert sent[j].developer == sent[i].developer and sent[j].send < sent[i].send
    assert (load.requests.cached < load.requests.prompt).all()
    assert load.rate == pytest.approx(len(sent) / 40.0)


def test_stable_windows_let_consecutive_prompts_share_their_beginning():
    # issue 18's replay: a request at every line end, the 32 lines above the cursor
    steady = TypingParams.load(ROOT / "benchmarks" / "steady_typist.toml")

    def shared(lines: int) -> float:
        return typing_load(
            6, 60.0, steady, max_tokens=16, count_tokens=count, seed=2, window=Window(lines)
        ).shared_share

    assert shared(16) > shared(0) + 0.2


def test_more_developers_see_fewer_suggestions_on_one_cpu_replica():
    def shown(developers: int) -> float:
        load = typing_load(developers, 60.0, BRISK, max_tokens=16, count_tokens=count, seed=1)
        limits = dict(LIMITS, max_seqs=4)
        return typing_outcome(load, simulate_requests(STEP, load.requests, **limits)).shown_share

    assert shown(1) > shown(16)


def test_a_check_can_give_each_suggestion_the_length_it_came_out():
    engine = Engine(
        describe="test", step=STEP, replicas=1, limits=dict(LIMITS, max_seqs=4),
        count_tokens=count, bos=0, fim=False,
    )  # fmt: skip
    load, asked = predict_typing(engine, 4, 30.0, BRISK, max_tokens=16, seed=1)
    n = len(load.requests.arrival)
    short, outcome = predict_typing(engine, 4, 30.0, BRISK, max_tokens=16, seed=1, outputs=[2] * n)
    assert list(short.requests.output) == [2] * n
    assert outcome.shown > asked.shown  # two tokens each come back before the next key more
    with pytest.raises(ValueError, match="completion lengths"):
        predict_typing(engine, 4, 30.0, BRISK, max_tokens=16, seed=1, outputs=[2] * (n + 1))


def test_plan_predict_typing_on_this_machine_and_on_a_gpu(tmp_path):
    probe = tmp_path / "probe.json"
    probe.write_text(replace(PROBE, model_path=str(embedded_model_path())).to_json())
    runner = CliRunner()
    common = ["plan", "predict", "--workload", "typing", "--developers", "4", "--duration", "30s"]
    local = runner.invoke(main, [*common, "--hardware", "local", "--probe", str(probe), "--json"])
    assert local.exit_code == 0, local.output
    data = json.loads(local.output)
    assert data["requests"] > 0 and data["shown"] + data["cancelled"] <= data["requests"]
    assert 0 <= data["shown_share"] <= 1 and data["mean_prompt_tokens"] > 50
    gpu = runner.invoke(main, [*common, "--gpu", "h100-sxm", "--output-tokens", "32"])
    assert gpu.exit_code == 0, gpu.output
    assert "developers typing" in gpu.output and "shown" in gpu.output
    missing = runner.invoke(main, ["plan", "predict", "--workload", "typing", "--gpu", "l4"])
    assert missing.exit_code == 2 and "--developers" in missing.output
