"""Will it fit? Weights plus KV cache against device memory, per GPU and tensor-parallel degree.

vLLM takes ``gpu_memory_utilization`` of device memory, keeps the weights and its runtime
buffers in it, and turns the rest into paged KV cache. A model "fits" when one full
``max_model_len`` sequence fits in that KV space; the largest batch is how many such sequences
fit (capped by ``max_num_seqs``). Tensor parallelism splits weights and KV heads over the GPUs
(KV heads are replicated when there are fewer of them than GPUs), and vLLM requires the
attention heads to divide evenly, so only divisors of the head count among 1, 2, 4, 8 are tried.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from coderig.plan.catalog import GIB, GPU, Catalog, DType, Model

__all__ = ["Fit", "fit", "smallest_tp", "TP_DEGREES", "engine_limits"]

TP_DEGREES = (1, 2, 4, 8)


@dataclass(frozen=True)
class Fit:
    gpu: str
    model: str
    dtype: str
    tensor_parallel: int
    max_model_len: int
    weights_gib_per_gpu: float
    usable_gib_per_gpu: float
    kv_gib_per_gpu: float
    kv_tokens: int
    max_batch: int
    fits: bool
    reason: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def engine_limits(gpu: GPU, catalog: Catalog) -> tuple[int, int]:
    """(max_num_batched_tokens, max_num_seqs) as vLLM picks them for this GPU: by its memory,
    and by its name (vLLM keeps an A100's budget small whatever its memory, see engine.toml)."""
    engine = catalog.engine
    name = f"{gpu.id} {gpu.name}".lower()
    excluded = any(word.lower() in name for word in engine.get("large_defaults_exclude", ()))
    large = gpu.memory_gib >= float(engine.get("large_gpu_min_gib", 70)) and not excluded
    suffix = "large" if large else "small"
    return (
        int(engine.get(f"max_num_batched_tokens_{suffix}", 2048)),
        int(engine.get(f"max_num_seqs_{suffix}", 256)),
    )


def kv_bytes_per_token_per_gpu(model: Model, tp: int, bytes_per_element: float) -> float:
    heads_per_gpu = math.ceil(model.kv_heads / tp)  # replicated when kv_heads < tp
    return 2 * model.layers * heads_per_gpu * model.head_dim * bytes_per_element


def fit(
    gpu: GPU,
    model: Model,
    dtype: DType,
    catalog: Catalog,
    *,
    tensor_parallel: int = 1,
    max_model_len: int | None = None,
    gpu_memory_utilization: float | None = None,
) -> Fit:
    engine = catalog.engine
    max_len = int(max_model_len or engine.get("max_model_len", 4096))
    util = float(gpu_memory_utilization or engine.get("gpu_memory_utilization", 0.9))
    tp = tensor_parallel
    reason = ""
    if model.attention_heads % tp:
        reason = f"{model.attention_heads} attention heads do not split over {tp} GPUs"
    usable = gpu.memory_bytes * util - float(engine.get("runtime_overhead_gib", 2.0)) * GIB
    weights = model.weight_bytes(dtype) / tp
    kv_space = usable - weights
    per_token = kv_bytes_per_token_per_gpu(model, tp, catalog.kv_bytes_per_element)
    kv_tokens = max(0, int(kv_space // per_token)) if kv_space > 0 else 0
    _, max_num_seqs = engine_limits(gpu, catalog)
    max_batch = min(max_num_seqs, kv_tokens // max_len)
    fits = not reason and max_batch >= 1
    if not reason and not fits:
        if kv_space <= 0:
            reason = f"weights {weights / GIB:.1f} GiB/GPU exceed usable {usable / GIB:.1f} GiB/GPU"
        else:
            reason = f"KV space holds {kv_tokens} tokens < max-model-len {max_len}"
    return Fit(
        gpu=gpu.id,
        model=model.id,
        dtype=dtype.id,
        tensor_parallel=tp,
        max_model_len=max_len,
        weights_gib_per_gpu=weights / GIB,
        usable_gib_per_gpu=usable / GIB,
        kv_gib_per_gpu=max(kv_space, 0) / GIB,
        kv_tokens=kv_tokens,
        max_batch=max(max_batch, 0),
        fits=fits,
        reason=reason,
    )


def smallest_tp(
    gpu: GPU,
    model: Model,
    dtype: DType,
    catalog: Catalog,
    *,
    max_model_len: int | None = None,
    gpu_memory_utilization: float | None = None,
) -> Fit | None:
    """The fit at the smallest tensor-parallel degree that holds the model, or None."""
    for tp in TP_DEGREES:
        result = fit(
            gpu,
            model,
            dtype,
            catalog,
            tensor_parallel=tp,
            max_model_len=max_model_len,
            gpu_memory_utilization=gpu_memory_utilization,
        )
        if result.fits:
            return result
    return None
