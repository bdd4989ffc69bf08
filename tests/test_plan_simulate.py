import numpy as np
import pytest

from coderig.plan.calibrate import load_calibration
from coderig.plan.catalog import load_catalog
from coderig.plan.predict import Deployment, predict, step_model_for
from coderig.plan.roofline import Factors, StepModel
from coderig.plan.simulate import Workload, arrival_times, simulate


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


@pytest.fixture(scope="module")
def factors():
    return load_calibration().factors


def h100_7b(catalog, factors, replicas=1):
    return Deployment("h100-sxm", "qwen2.5-coder-7b", "bf16", 1, replicas)


def test_a_lone_request_takes_one_prefill_plus_every_decode_step(catalog, factors):
    step, _, budget, _ = step_model_for(catalog, factors, h100_7b(catalog, factors))
    result = simulate(step, Workload(rate=0.1, duration=10, prompt_tokens=700, output_tokens=128))
    assert result.requests == 1
    prefill = step.prefill_time(700, budget)
    decode = sum(step.decode_time(700 + g) for g in range(1, 128))
    overhead = step.request_overhead_s
    # each step's token then passes the API-server process, which is never behind here
    api = step.frontend_s_per_token
    assert result.ttft_p50 == pytest.approx(prefill + api + overhead, rel=1e-9)
    assert result.latency_p50 == pytest.approx(prefill + decode + api + overhead, rel=1e-9)
    assert (result.ttft_p50, result.latency_p50) == pytest.approx(
        step.unloaded_latency(700, 128, budget), rel=1e-9
    )


def test_long_prompts_are_chunked_by_the_token_budget():
    catalog = load_catalog()
    step = StepModel(
        catalog.gpu("l4"), catalog.model("qwen2.5-coder-1.5b"), catalog.dtype("bf16"), Factors()
    )
    one = simulate(
        step,
        Workload(rate=0.1, duration=10, prompt_tokens=5000, output_tokens=1),
        max_batched_tokens=2048,
    )
    assert one.ttft_p50 == pytest.approx(
        step.prefill_time(5000, 2048) + step.frontend_s_per_token + step.request_overhead_s
    )
    assert step.prefill_time(5000, 2048) > step.prefill_time(5000)  # 3 steps' fixed costs


def test_h100_7b_decode_step_is_physically_plausible(catalog, factors):
    step, *_ = step_model_for(catalog, factors, h100_7b(catalog, factors))
    assert 5e-3 < step.decode_time(764) < 9e-3  # vLLM: ~6-8 ms per step at batch 1
    a100, *_ = step_model_for(catalog, factors, Deployment("a100-80gb", "qwen2.5-coder-7b"))
    assert 1.3 < a100.decode_time(764) / step.decode_time(764) < 1.8


def test_every_layer_adds_its_kernel_floor_to_every_step(catalog, factors):
    gpu, model, bf16 = (
        catalog.gpu("a100-80gb"),
        catalog.model("qwen2.5-coder-1.5b"),
        catalog.dtype("bf16"),
    )
    bare = StepModel(gpu, model, bf16, factors)
    floored = StepModel(gpu, model, bf16, factors, layer_floor_s=50e-6)
    floor = model.layers * 50e-6
    assert floored.decode_time(700) - bare.decode_time(700) == pytest.approx(floor)
    assert floored.step_time(512, 1, 512 * 256, 512, 1) - bare.step_time(
        512, 1, 512 * 256, 512, 1
    ) == pytest.approx(floor)
    assert floored.decode_constants()[4] - bare.decode_constants()[4] == pytest.approx(floor)
    # each GPU of a tensor-parallel replica runs every layer's kernels: the floor is not shared
    tp2 = StepModel(gpu, model, bf16, factors, tensor_parallel=2, layer_floor_s=50e-6)
    tp2_bare = StepModel(gpu, model, bf16, factors, tensor_parallel=2)
    assert tp2.decode_time(700) - tp2_bare.decode_time(700) == pytest.approx(floor)


def test_a_gpu_without_a_measured_floor_takes_the_engine_default(catalog):
    default = catalog.unmeasured_layer_floor_us
    assert default > 0
    assert catalog.gpu("a100-80gb").layer_floor_s(default) == pytest.approx(57.2e-6)
    assert catalog.gpu("h100-sxm").layer_floor_s(default) == pytest.approx(44.5e-6)
    assert catalog.gpu("rtx-4090").layer_floor_s(default) == pytest.approx(default * 1e-6)
    step, *_ = step_model_for(
        catalog, load_calibration().factors, Deployment("rtx-4090", "qwen2.5-coder-7b")
    )
    assert step.kernel_floor_s == pytest.approx(step.model.layers * default * 1e-6)


def test_kernel_floors_explain_why_small_models_decode_slower_than_their_weights(catalog, factors):
    """Qwen2.5 Speed Benchmark, A100 80GB, batch 1, 2048 tokens: 7B takes 2.18x as long as
    1.5B, though it reads 4.6x the bytes per step. Both have 28 layers of kernels to launch."""

    def a100(model, floor):
        gpu, bf16 = catalog.gpu("a100-80gb"), catalog.dtype("bf16")
        step = StepModel(gpu, catalog.model(model), bf16, factors, layer_floor_s=floor)
        return sum(step.decode_time(g) for g in range(1, 2048))

    measured = 24.300 / 11.171
    floor = catalog.gpu("a100-80gb").layer_floor_s(catalog.unmeasured_layer_floor_us)
    with_floor = a100("qwen2.5-coder-7b", floor) / a100("qwen2.5-coder-1.5b", floor)
    without = a100("qwen2.5-coder-7b", 0.0) / a100("qwen2.5-coder-1.5b", 0.0)
    assert abs(with_floor / measured - 1) < abs(without / measured - 1) / 2


def test_latency_grows_with_rate(catalog, factors):
    dep = h100_7b(catalog, factors)
    p50 = [
        predict(catalog, factors, dep, Workload(rate=rate, duration=5)).result.latency_p50
        for rate in (1, 8, 16, 32, 48)
    ]
    assert all(b > a for a, b in zip(p50, p50[1:], strict=False)), p50


def test_latency_falls_with_replicas(catalog, factors):
    workload = Workload(rate=48, duration=20, arrival="poisson", seed=3)
    p99 = [
        predict(catalog, factors, h100_7b(catalog, factors, r), workload).result.latency_p99
        for r in (1, 2, 4)
    ]
    assert p99[0] > p99[1] > p99[2], p99


def test_above_capacity_the_queue_grows_with_the_attack(catalog, factors):
    dep = Deployment("l4", "qwen2.5-coder-7b", "bf16", 1, 1)
    short = predict(catalog, factors, dep, Workload(rate=20, duration=5)).result
    long = predict(catalog, factors, dep, Workload(rate=20, duration=20)).result
    assert long.max_waiting > short.max_waiting > 10
    assert long.latency_p99 > 2 * short.latency_p99
    # below capacity the duration hardly matters
    ok_short = predict(catalog, factors, h100_7b(catalog, factors), Workload(rate=8, duration=5))
    ok_long = predict(catalog, factors, h100_7b(catalog, factors), Workload(rate=8, duration=20))
    assert ok_long.result.latency_p99 == pytest.approx(ok_short.result.latency_p99, rel=0.05)


def test_routers_spread_load_and_poisson_is_seeded():
    a = arrival_times(10, 10, "poisson", seed=1)
    assert np.array_equal(a, arrival_times(10, 10, "poisson", seed=1))
    assert 60 < len(a) < 140 and a.max() < 10
    assert len(arrival_times(32, 5, "constant")) == 160
    with pytest.raises(ValueError, match="arrival"):
        arrival_times(1, 1, "bursty")
    catalog = load_catalog()
    step = StepModel(
        catalog.gpu("h100-sxm"), catalog.model("qwen2.5-coder-7b"), catalog.dtype("bf16"), Factors()
    )
    w = Workload(rate=40, duration=10, arrival="poisson", seed=2)
    rr = simulate(step, w, replicas=3, router="round-robin")
    ll = simulate(step, w, replicas=3, router="least-loaded")
    assert rr.completed == ll.completed == rr.requests
    assert ll.latency_p99 <= rr.latency_p99 * 1.02


def test_tensor_parallel_speeds_up_decode_of_a_big_model(catalog, factors):
    one, *_ = step_model_for(catalog, factors, Deployment("h100-sxm", "qwen2.5-coder-32b"))
    two, *_ = step_model_for(
        catalog, factors, Deployment("h100-sxm", "qwen2.5-coder-32b", tensor_parallel=2)
    )
    assert 1.3 < one.decode_time(1000) / two.decode_time(1000) < 2.0


def test_prefix_cache_hits_skip_prefill_of_whole_blocks(catalog, factors):
    from coderig.plan.simulate import cached_prompt_tokens

    assert cached_prompt_tokens(700, 1.0) == 688  # 43 whole blocks; the last 12 are computed
    assert cached_prompt_tokens(704, 1.0) == 688  # the last token is always recomputed
    assert cached_prompt_tokens(700, 0.5) == 336
    assert cached_prompt_tokens(700, 0.0) == 0
    with pytest.raises(ValueError, match="prefix_cache_hit"):
        Workload(rate=1, duration=1, prefix_cache_hit=1.5)
    dep = h100_7b(catalog, factors)
    cold = predict(catalog, factors, dep, Workload(rate=0.1, duration=10)).result
    warm = predict(
        catalog, factors, dep, Workload(rate=0.1, duration=10, prefix_cache_hit=1.0)
    ).result
    assert warm.ttft_p50 < cold.ttft_p50 - 0.005
    # one body repeated: the first request prefills everything, the others only 12 tokens
    same = predict(
        catalog, factors, dep, Workload(rate=0.1, duration=30, identical_prompts=True)
    ).result  # three requests: cold, warm, warm
    assert same.ttft_p50 == pytest.approx(warm.ttft_p50, rel=1e-6)
    gap = cold.ttft_p50 - warm.ttft_p50
    assert same.ttft_p99 == pytest.approx(warm.ttft_p50 + 0.98 * gap, rel=1e-6)
    # at 32 req/s distinct prompts cost far more than one cached body
    distinct = predict(catalog, factors, dep, Workload(rate=32, duration=5)).result
    cached = predict(
        catalog, factors, dep, Workload(rate=32, duration=5, identical_prompts=True)
    ).result
    assert distinct.latency_p50 > cached.latency_p50 + 0.05


def test_a_slow_api_server_is_a_queue_in_series(catalog, factors):
    """Above its token rate the API server falls behind for as long as the load lasts."""
    from dataclasses import replace

    dep = h100_7b(catalog, factors)
    w = Workload(rate=32, duration=5, identical_prompts=True)
    base = predict(catalog, factors, dep, w).result
    assert base.frontend_utilization < 0.5
    slow = replace(factors, frontend_us_per_token=400.0)  # 2,500 tokens/s < 4,096 offered
    jammed = predict(catalog, slow, dep, w).result
    assert jammed.frontend_utilization > 1.5
    assert jammed.latency_p99 > base.latency_p99 + 1.0
    assert jammed.latency_p99 / jammed.latency_p50 > 1.3  # later requests wait longer
    # a GPU-independent ceiling: a faster GPU does not help
    b200 = predict(catalog, slow, Deployment("b200", "qwen2.5-coder-7b"), w).result
    assert b200.latency_p99 > base.latency_p99 + 1.0


def test_a_prefix_shared_by_every_request_is_held_once(catalog, factors):
    """The 32B model on one H100 keeps ~37k KV tokens. One repeated 700-token body shares 688
    of them: counted per request (828 each) only ~44 requests would fit and a queue would
    build at 32 req/s; vLLM's block manager holds the shared blocks once, so none does."""
    from coderig.plan.simulate import _kv_used

    assert _kv_used(0, 3 * 700, 3, shared=688, slack=0) == 3 * 700 - 2 * 688
    assert _kv_used(0, 3 * 700, 3, shared=0, slack=8) == 3 * 700 + 24
    dep = Deployment("h100-sxm", "qwen2.5-coder-32b")
    same = predict(
        catalog, factors, dep, Workload(rate=32, duration=5, identical_prompts=True)
    ).result
    assert predict(catalog, factors, dep, Workload(rate=1, duration=1)).fit.kv_tokens < 160 * 828
    assert same.max_waiting <= 3 and same.preemptions == 0
    assert same.ttft_p50 < 0.2


def test_kv_blocks_are_taken_as_tokens_are_computed_and_the_newest_request_is_preempted():
    """vLLM V1 allocates blocks per scheduled token and, out of blocks, preempts the newest
    running request (recomputed later), so the oldest ones are not delayed by the newcomers."""
    catalog = load_catalog()
    step = StepModel(
        catalog.gpu("l4"), catalog.model("qwen2.5-coder-1.5b"), catalog.dtype("bf16"), Factors()
    )
    w = Workload(rate=50, duration=0.2, prompt_tokens=200, output_tokens=400)  # 10 requests
    roomy = simulate(step, w, kv_capacity_tokens=100_000)
    # 3 full requests (600 tokens each) fit; 10 prompts (2,000 tokens) fit at first, their
    # outputs do not, so some are preempted and recomputed, and every request still finishes.
    tight = simulate(step, w, kv_capacity_tokens=1_900)
    assert roomy.preemptions == 0 and tight.preemptions > 0
    assert tight.completed == tight.requests == 10
    assert tight.mean_batch > 3  # more than a full-output reservation would have admitted
    assert tight.latency_p99 > roomy.latency_p99
    with pytest.raises(ValueError, match="KV tokens"):
        simulate(step, w, kv_capacity_tokens=500)
