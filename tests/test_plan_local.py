"""``--hardware local``: a probe of this CPU becomes a step model that gives back what was
measured, the simulator runs it with llama-server's limits, and the CLI says what it needs."""

from __future__ import annotations

import copy
import dataclasses
import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from coderig.cli import main
from coderig.plan.local import (
    LocalProbe,
    load_probe,
    local_step_model,
    local_unloaded_latency,
    predict_local,
    run_probe,
)
from coderig.plan.simulate import Requests, Workload, simulate, simulate_requests

# SmolLM2-135M's shape (its GGUF metadata) with figures of the order a 2-core Xeon measures.
PROBE = LocalProbe(
    cpu="Test CPU",
    cores=2,
    threads=2,
    slots=4,
    batch_size=512,
    n_ctx=4096,
    model_path="/models/smollm2.gguf",
    model_name="smollm2",
    ftype="Q4_1",
    model_bytes=96_576_768,
    layers=30,
    hidden_size=576,
    attention_heads=9,
    kv_heads=3,
    head_dim=64,
    intermediate_size=1536,
    vocab_size=49152,
    prefill_tokens=384,
    prefill_s=1.35,
    decode_step_s={1: 0.012, 4: 0.024},
    decode_long_s=0.014,
    decode_long_context=408,
    request_overhead_s=0.002,
    measured_at="2026-12-05 04:25 UTC",
)


def test_the_step_model_gives_back_each_measurement_of_the_probe():
    step = local_step_model(PROBE)
    context = PROBE.decode_context()
    # the lone prompt, in one batch (384 < 512 tokens per step)
    assert step.prefill_time(PROBE.prefill_tokens, PROBE.batch_size) == pytest.approx(1.35)
    # one sequence decoding, at a short and at a long context, then every slot at once
    assert step.decode_time(round(context)) == pytest.approx(0.012, rel=0.01)
    assert step.decode_time(408) == pytest.approx(0.014, rel=0.01)
    b = 4
    all_slots = step.step_time(b, b, b * context, b * context, b)
    assert all_slots == pytest.approx(0.024, rel=0.01)
    assert step.request_overhead_s == pytest.approx(0.002)
    assert step.frontend_s_per_token == 0.0  # llama-server has no separate API process
    assert step.kernel_floor_s == 0.0  # the probe's timings already hold every layer's floors


# The same CPU as this machine's probe measured it on 2026-12-05 (AVX2 build): here 1, 2, 3 and
# 4 decodes at once took 10.4, 14.9, 20.8 and 22.9 ms, each added sequence costing about as
# much again as the first one's compute: the weight read does not hide the compute.
ADDITIVE = dataclasses.replace(
    PROBE,
    prefill_s=1.198,
    decode_step_s={1: 0.01006, 4: 0.02241},
    decode_long_s=0.01165,
)


def test_on_a_cpu_whose_steps_add_up_the_model_sums_weight_read_and_compute():
    step = local_step_model(ADDITIVE)
    assert step.overlap is False
    context = ADDITIVE.decode_context()
    assert step.prefill_time(ADDITIVE.prefill_tokens, 512) == pytest.approx(1.198)
    assert step.decode_time(round(context)) == pytest.approx(0.01006, rel=0.01)
    assert step.decode_time(408) == pytest.approx(0.01165, rel=0.01)

    def decodes(n: int) -> float:
        return step.step_time(n, n, n * context, n * context, n)

    assert decodes(4) == pytest.approx(0.02241, rel=0.01)
    # between the two, the steps grow by the same amount per sequence (measured: 14.9 and
    # 20.8 ms), where the larger-of-two form stays near the weight read (12.0 and 16.8 ms)
    assert decodes(2) - decodes(1) == pytest.approx(decodes(4) - decodes(3), rel=0.01)
    assert decodes(2) > 0.014


# The same CPU with every slot also decoding after 768-token prompts: each own token of context
# then costs 4.32 us (the lone decode's KV read) plus 3 x 0.6 us for the other three
# sequences' cells every query row skips (llama-server's unified KV cache).
UNIFIED = dataclasses.replace(
    ADDITIVE,
    decode_all_long_s=0.02241
    + 4 * (792 - 40) * (0.01165 - 0.01006) / (408 - 40)
    + 4 * (792 - 40) * 3 * 0.6e-6,
    decode_all_long_context=792,
)


def test_decodes_at_once_skip_each_others_cells_at_a_measured_cost_per_cell():
    step = local_step_model(UNIFIED)
    assert step.masked_pair_s == pytest.approx(0.6e-6, rel=1e-6)
    context = UNIFIED.decode_context()
    # every measurement is given back, the new one with the cells skipped
    assert step.decode_batch_time([792] * 4) == pytest.approx(UNIFIED.decode_all_long_s)
    assert step.decode_batch_time([context] * 4) == pytest.approx(0.02241)
    assert step.decode_batch_time([context]) == pytest.approx(0.01006)
    assert step.decode_time(408) == pytest.approx(0.01165)
    assert step.prefill_time(UNIFIED.prefill_tokens, 512) == pytest.approx(1.198)
    # a lone sequence skips nothing, whatever its context
    assert step.decode_batch_time([792]) == pytest.approx(step.decode_time(792))
    # a probe that did not measure it (older files) leaves the term out
    assert local_step_model(ADDITIVE).masked_pair_s == 0.0


# The same CPU's continuations: 64 tokens more of a cached 16- and 768-token prompt took 190
# and 272 ms, where the step model alone gives 36 ms between them.
MOVED = dataclasses.replace(
    ADDITIVE, chunk_short_s=0.190, chunk_short_cached=16, chunk_long_s=0.272, chunk_long_cached=768
)


def test_a_cached_prompt_moved_back_into_a_slot_costs_the_measured_time_per_token():
    step = local_step_model(MOVED)
    plain = local_step_model(ADDITIVE)
    assert plain.moved_token_s == 0.0  # a probe that did not measure it

    def chunk(cached: int) -> float:
        return plain.step_time(64, 1, 64 * (cached + 65 / 2), cached + 64, 1)

    expected = (0.272 - 0.190 - (chunk(768) - chunk(16))) / (768 - 16)
    assert step.moved_token_s == pytest.approx(expected)
    assert 20e-6 < step.moved_token_s < 80e-6
    # a lone continuation: its cached prefix is moved back first, then its new tokens computed
    assert step.unloaded_latency(535, 16, 512, cached=500)[0] - plain.unloaded_latency(
        535, 16, 512, cached=500
    )[0] == pytest.approx(500 * expected)


def test_the_simulator_moves_idle_slots_out_and_cached_prefixes_in_when_a_request_starts():
    step = local_step_model(MOVED)
    plain = copy.copy(step)
    plain.moved_token_s = 0.0
    # a continuation alone: the simulator and the step model agree
    one = Requests(
        arrival=np.array([0.0]), prompt=np.array([535]), cached=np.array([500]),
        output=np.array([16]),
    )  # fmt: skip
    run = simulate_requests(step, one, **MOVED.limits())
    assert run.end[0] + run.overhead == pytest.approx(
        step.unloaded_latency(535, 16, MOVED.batch_size, cached=500)[1], rel=1e-9
    )
    # a second request after the first has finished: its start also saves the first's slot
    # (300 prompt + 24 generated tokens), on top of moving its own 100 cached tokens in
    two = Requests(
        arrival=np.array([0.0, 5.0]), prompt=np.array([300, 300]), cached=np.array([0, 100]),
        output=np.array([24, 24]),
    )  # fmt: skip
    moved = simulate_requests(step, two, **MOVED.limits())
    still = simulate_requests(plain, two, **MOVED.limits())
    assert moved.end[0] == pytest.approx(still.end[0])  # nothing to move for the first
    assert moved.end[1] - still.end[1] == pytest.approx(step.moved_token_s * (324 + 100))


def test_the_simulator_charges_each_row_for_the_other_sequences_cells():
    step = local_step_model(UNIFIED)
    two = Requests(
        arrival=np.array([0.0, 0.0]), prompt=np.array([200, 200]), cached=np.array([0, 0]),
        output=np.array([24, 24]),
    )  # fmt: skip
    pair = simulate_requests(step, two, **UNIFIED.limits())
    plain = copy.copy(step)
    plain.masked_pair_s = 0.0
    without = simulate_requests(plain, two, **UNIFIED.limits())
    # step 1 prefills the first prompt alone; step 2 decodes it (context 201) beside the
    # second prompt's 200 rows, each row skipping the other's cells: 201 x 401 rows x cells,
    # less the own ones (201 + 200 x 200); steps 3-24 decode both, each row skipping the
    # other's context (200 + k - 1 and 200 + k - 2 at step k) until the first one ends
    skipped = (201 * 401 - 201 - 200 * 200) + sum(400 + 2 * k - 3 for k in range(3, 25))
    assert pair.end[0] - without.end[0] == pytest.approx(0.6e-6 * skipped, rel=1e-3)
    assert (pair.end > without.end).all()
    # a request alone skips nothing
    one = dataclasses.replace(
        two, arrival=np.array([0.0]), prompt=np.array([200]), cached=np.array([0]),
        output=np.array([24]),
    )  # fmt: skip
    assert simulate_requests(step, one, **UNIFIED.limits()).end[0] == pytest.approx(
        simulate_requests(plain, one, **UNIFIED.limits()).end[0]
    )


def test_a_cpu_that_hides_compute_under_the_weight_read_keeps_the_larger_of_the_two():
    # PROBE's four slots cost less than four tokens' compute added to one step would
    step = local_step_model(PROBE)
    assert step.overlap is True


@pytest.mark.parametrize("probe", [PROBE, ADDITIVE], ids=["overlapped", "additive"])
def test_the_simulator_steps_a_lone_request_as_the_step_model_does(probe):
    step = local_step_model(probe)
    requests = Requests(
        arrival=np.array([0.0]), prompt=np.array([300]), cached=np.array([0]),
        output=np.array([24]),
    )  # fmt: skip
    run = simulate_requests(step, requests, **probe.limits())
    ttft, latency = step.unloaded_latency(300, 24, probe.batch_size)
    assert run.end[0] + run.overhead == pytest.approx(latency, rel=1e-9)
    # two at once (both prompts in one 512-token step): each decode-only step after it is
    # the model's two-sequence step
    two = dataclasses.replace(
        requests, arrival=np.array([0.0, 0.0]), prompt=np.array([200, 200]),
        cached=np.array([0, 0]), output=np.array([24, 24]),
    )  # fmt: skip
    pair = simulate_requests(step, two, **probe.limits())
    prefill = step.step_time(400, 2, 2 * 200 * 201 / 2, 400, 2)
    decodes = sum(step.step_time(2, 2, 2 * (200 + i), 2 * (200 + i), 2) for i in range(1, 24))
    # (within 1 %: the simulator's accounting of the context differs by a token here and
    # there; the larger-of-two form for the additive probe would be 9 % off)
    assert pair.end[0] == pytest.approx(prefill + decodes, rel=0.01)


def test_a_lone_request_is_its_prefill_then_its_decodes():
    ttft, latency = local_unloaded_latency(PROBE, prompt=256, output=32)
    step = local_step_model(PROBE)
    assert ttft == pytest.approx(step.prefill_time(256, 512) + 0.002)
    decodes = sum(step.decode_time(256 + i) for i in range(1, 32))
    assert latency == pytest.approx(ttft + decodes)
    # a prefix served from the prompt cache is not prefilled again
    cached_ttft, _ = local_unloaded_latency(PROBE, prompt=256, output=32, prefix_cache_hit=0.9)
    assert cached_ttft < ttft / 3


def test_more_than_the_slots_wait_and_latency_grows_with_the_rate():
    def p50(rate: float) -> float:
        workload = Workload(rate=rate, duration=60, prompt_tokens=256, output_tokens=32)
        return predict_local(PROBE, workload).result.latency_p50

    alone = local_unloaded_latency(PROBE, 256, 32)[1]
    assert p50(0.1) == pytest.approx(alone, rel=1e-6)  # requests never overlap
    assert p50(0.9) > alone
    burst = Workload(rate=50, duration=0.2, prompt_tokens=16, output_tokens=64)
    result = predict_local(PROBE, burst).result
    assert result.max_waiting >= 10 - PROBE.slots  # only 4 run at once


def test_a_probe_round_trips_through_its_file(tmp_path):
    path = tmp_path / "probe.json"
    path.write_text(PROBE.to_json())
    assert load_probe(path) == PROBE
    with pytest.raises(FileNotFoundError, match="coderig plan probe"):
        load_probe(tmp_path / "missing.json")
    (tmp_path / "old.json").write_text('{"cpu": "x"}')
    with pytest.raises(ValueError, match="run `coderig plan probe` again"):
        load_probe(tmp_path / "old.json")


def test_predict_local_needs_a_probe_and_takes_no_gpu_options(tmp_path):
    runner = CliRunner()
    missing = runner.invoke(
        main,
        ["plan", "predict", "--hardware", "local", "--rate", "1", "--probe", str(tmp_path / "x")],
    )
    assert missing.exit_code != 0 and "coderig plan probe" in missing.output
    path = tmp_path / "probe.json"
    path.write_text(PROBE.to_json())
    common = ["plan", "predict", "--hardware", "local", "--probe", str(path), "--rate", "0.5"]
    wrong = runner.invoke(main, [*common, "--model", "qwen2.5-coder-7b"])
    assert wrong.exit_code == 2 and "model it probed" in wrong.output
    shown = runner.invoke(main, [*common, "--prompt-tokens", "256", "--output-tokens", "32"])
    assert shown.exit_code == 0, shown.output
    assert "Test CPU" in shown.output and "GFLOP/s" in shown.output and "latency" in shown.output
    as_json = runner.invoke(main, [*common, "--json"])
    data = json.loads(as_json.output)
    assert data["gpu"] == "local" and data["probe"]["cpu"] == "Test CPU"
    assert data["requests"] > 0 and math.isfinite(data["latency_p50"])


@pytest.mark.e2e
def test_the_probe_measures_coderig_serve_on_the_embedded_model():
    from coderig.models import embedded_model_path
    from tests.support.engine import llama_server_binary

    seen: list[str] = []
    probe = run_probe(
        embedded_model_path(),
        threads=2,
        slots=2,
        batch_size=512,
        n_ctx=1024,
        llama_server=str(llama_server_binary()),
        prefill_tokens=64,
        say=seen.append,
    )
    assert (probe.layers, probe.hidden_size, probe.attention_heads) == (30, 576, 9)
    assert probe.n_params > 100e6 and probe.model_bytes > 50e6 and probe.ftype == "Q4_1"
    assert 60 <= probe.prefill_tokens <= 70  # the server's count of the prompt it was sent
    assert set(probe.decode_step_s) == {1, 2} and probe.decode_long_s > 0
    assert probe.decode_long_context > probe.prefill_tokens
    assert probe.decode_all_long_s > 0 and probe.decode_all_long_context > probe.decode_context()
    assert any("at once after" in line for line in seen)
    assert probe.chunk_long_cached > probe.chunk_short_cached >= 1
    assert probe.chunk_short_s > 0 and probe.chunk_long_s > 0
    assert probe.prefill_s > 0 and all(s > 0 for s in probe.decode_step_s.values())
    assert any("prefill" in line for line in seen)
    step = local_step_model(probe)
    assert step.gemm_flops_per_s > 0 and step.bytes_per_s > 0


def test_past_capacity_serve_refuses_what_would_wait_too_long_and_the_rest_stay_fast():
    # 1.5 req/s of 256-token prompts is past what this probe's CPU prefills: without admission
    # control the queue grows for the whole run; coderig serve's (--max-queue-wait 1s) refuses
    # the requests it estimates would wait longer, so those it serves wait about that long
    workload = Workload(rate=1.5, duration=60, prompt_tokens=256, output_tokens=32)
    step, limits = local_step_model(PROBE), PROBE.limits()
    unbounded = simulate(step, workload, **limits)
    served = predict_local(PROBE, workload).result
    assert unbounded.shed == 0 and served.shed > 0
    assert served.completed + served.shed == served.requests
    slow = Workload(rate=0.9, duration=60, prompt_tokens=256, output_tokens=32)
    assert unbounded.latency_p50 > 3 * predict_local(PROBE, slow).result.latency_p50
    assert served.latency_p50 < unbounded.latency_p50 / 3
    # nothing is refused while the machine keeps up
    assert predict_local(PROBE, Workload(rate=0.1, duration=60, prompt_tokens=256)).result.shed == 0
