import pytest

from coderig.plan.catalog import load_catalog
from coderig.plan.memory import fit, smallest_tp


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


@pytest.mark.parametrize(
    ("model", "published_b", "kv_bytes"),
    [
        ("qwen2.5-coder-7b", 7.61, 2 * 28 * 4 * 128 * 2),
        ("qwen2.5-coder-32b", 32.8, 2 * 64 * 8 * 128 * 2),
    ],
)
def test_parameter_counts_and_kv_bytes_match_published_sizes(catalog, model, published_b, kv_bytes):
    spec = catalog.model(model)
    assert spec.params / 1e9 == pytest.approx(published_b, rel=0.01)
    assert spec.kv_bytes_per_token() == kv_bytes  # 56 KiB and 256 KiB per token


def test_every_catalog_model_matches_its_model_card(catalog):
    for spec in catalog.models.values():
        assert spec.params / 1e9 == pytest.approx(spec.published_params_b, rel=0.02), spec.id


def test_weight_bytes_shrink_with_dtype_but_embeddings_stay_bf16(catalog):
    spec = catalog.model("qwen2.5-coder-7b")
    bf16, fp8, int4 = (spec.weight_bytes(catalog.dtype(d)) for d in ("bf16", "fp8", "int4"))
    assert bf16 == pytest.approx(2 * spec.params)
    assert int4 < fp8 < bf16
    assert fp8 > spec.params  # embedding + lm_head (1.09 B params) are kept at 2 bytes


def test_required_gpus_are_in_the_catalog_with_sources(catalog):
    required = {
        "rtx-4090",
        "rtx-6000-ada",
        "l4",
        "l40s",
        "a10g",
        "a100-40gb",
        "a100-80gb",
        "h100-pcie",
        "h100-sxm",
        "h200",
        "b200",
        "mi300x",
    }
    assert required <= set(catalog.gpus)
    for gpu in catalog.gpus.values():
        assert gpu.source and gpu.price_source and gpu.price_per_hour > 0


def test_user_catalog_overrides_price_and_adds_entries(tmp_path, monkeypatch):
    user = tmp_path / "mine.toml"
    user.write_text(
        "[gpus.h100-sxm]\nprice_per_hour = 1.25\n"
        '[gpus.my-gpu]\nname = "X"\nmemory_gib = 32\nbandwidth_gbps = 1000\nbf16_tflops = 200\n'
        '[models."tiny-coder"]\nlayers = 2\nhidden_size = 64\nattention_heads = 4\nkv_heads = 2\n'
        "head_dim = 16\nintermediate_size = 128\nvocab_size = 1000\n"
    )
    monkeypatch.setenv("CODERIG_CATALOG", str(user))
    catalog = load_catalog()
    assert catalog.gpu("h100-sxm").price_per_hour == 1.25
    assert catalog.gpu("h100-sxm").bandwidth_gbps == 3350  # untouched fields survive
    assert catalog.gpu("my-gpu").memory_gib == 32
    assert catalog.model("tiny-coder").params > 0


def test_bad_catalog_entries_are_reported(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[gpus.H100_Custom]\nname = "x"\nmemory_gib = 1\nbandwidth_gbps = 1\nbf16_tflops = 1\n'
    )
    with pytest.raises(ValueError, match="lower-case"):
        load_catalog([bad])
    bad.write_text("[gpus.h100-sxm]\nmemory = 80\n")
    with pytest.raises(ValueError, match="unknown field"):
        load_catalog([bad])
    with pytest.raises(KeyError, match="unknown GPU"):
        load_catalog().gpu("h100")


def test_will_it_fit(catalog):
    seven, big = catalog.model("qwen2.5-coder-7b"), catalog.model("qwen2.5-coder-32b")
    bf16 = catalog.dtype("bf16")
    h100 = fit(catalog.gpu("h100-sxm"), seven, bf16, catalog)
    assert h100.fits and h100.max_batch >= 200  # ~1 M tokens of KV at 56 KiB/token
    l4 = fit(catalog.gpu("l4"), seven, bf16, catalog)
    assert l4.fits and l4.max_batch < h100.max_batch
    assert not fit(catalog.gpu("l40s"), big, bf16, catalog).fits
    assert smallest_tp(catalog.gpu("l40s"), big, bf16, catalog).tensor_parallel == 2
    assert smallest_tp(catalog.gpu("h100-sxm"), big, bf16, catalog).tensor_parallel == 1
    longer = fit(catalog.gpu("h100-sxm"), seven, bf16, catalog, max_model_len=32768)
    assert longer.max_batch < h100.max_batch
    # 40 heads do not split over 8 GPUs... but do over 2 and 4; 28 heads not over 8 either.
    assert not fit(catalog.gpu("l4"), seven, bf16, catalog, tensor_parallel=8).fits


def test_engine_budget_follows_vllm_defaults_by_memory_and_name(catalog):
    """vLLM gives >= 70 GiB GPUs an 8192-token step budget, except the A100 (PR #17885)."""
    from coderig.plan.memory import engine_limits

    assert engine_limits(catalog.gpu("h100-sxm"), catalog) == (8192, 1024)
    assert engine_limits(catalog.gpu("mi300x"), catalog) == (8192, 1024)
    assert engine_limits(catalog.gpu("a100-80gb"), catalog) == (2048, 256)
    assert engine_limits(catalog.gpu("rtx-4090"), catalog) == (2048, 256)


def test_compute_bound_work_runs_at_the_measured_matmul_ceiling_not_the_datasheet(catalog):
    """Prefill scales with what a large GEMM reaches (MAMF): an MI300X reaches 51 % of its
    datasheet bf16 peak, an H100 80 %, so the MI300X prefills slower than its datasheet says."""
    frac = catalog.unmeasured_matmul_fraction
    h100, mi300x, l40s = catalog.gpu("h100-sxm"), catalog.gpu("mi300x"), catalog.gpu("l40s")
    assert h100.matmul_tflops("bf16", frac) == h100.bf16_tflops_mamf == 794.5
    assert h100.matmul_tflops("fp8", frac) == h100.fp8_tflops_mamf
    # no MAMF measured: the median measured NVIDIA fraction of the datasheet
    assert l40s.matmul_tflops("bf16", frac) == pytest.approx(l40s.bf16_tflops * 0.803)
    # fp8 not measured on the MI300X: its own measured bf16 efficiency, not other GPUs'
    assert mi300x.matmul_tflops("fp8", frac) == pytest.approx(mi300x.fp8_tflops * 668.4 / 1307.4)
    from coderig.plan.calibrate import load_calibration
    from coderig.plan.predict import Deployment, step_model_for

    f = load_calibration().factors
    fast, *_ = step_model_for(catalog, f, Deployment("h100-sxm", "qwen2.5-coder-7b"))
    slow, *_ = step_model_for(catalog, f, Deployment("mi300x", "qwen2.5-coder-7b"))
    ratio = slow.prefill_time(8192, 8192) / fast.prefill_time(8192, 8192)
    assert ratio == pytest.approx(794.5 / 668.4, rel=0.05)  # datasheets would say 989/1307
