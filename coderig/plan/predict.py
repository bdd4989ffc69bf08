"""One configuration, one load: what latency will it see? Glue from catalog ids to the simulator."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from coderig.plan.catalog import Catalog
from coderig.plan.memory import Fit, engine_limits, fit
from coderig.plan.roofline import Factors, StepModel
from coderig.plan.simulate import SimResult, Workload, cached_prompt_tokens, simulate

__all__ = ["Deployment", "Prediction", "predict", "step_model_for", "unloaded_latency"]


@dataclass(frozen=True)
class Deployment:
    gpu: str
    model: str
    dtype: str = "bf16"
    tensor_parallel: int = 1
    replicas: int = 1

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Prediction:
    deployment: Deployment
    workload: Workload
    result: SimResult
    fit: Fit

    def to_dict(self) -> dict:
        out = {
            **self.deployment.to_dict(),
            **{f"workload_{k}": v for k, v in asdict(self.workload).items()},
            **self.result.to_dict(),
            "max_batch_at_max_model_len": self.fit.max_batch,
            "kv_tokens_per_replica": self.fit.kv_tokens,
        }
        return out


def step_model_for(
    catalog: Catalog, factors: Factors, deployment: Deployment
) -> tuple[StepModel, Fit, int, int]:
    """(step model, memory fit, max_num_batched_tokens, max_num_seqs); ValueError if no fit."""
    gpu = catalog.gpu(deployment.gpu)
    model = catalog.model(deployment.model)
    dtype = catalog.dtype(deployment.dtype)
    memory = fit(gpu, model, dtype, catalog, tensor_parallel=deployment.tensor_parallel)
    if not memory.fits:
        raise ValueError(
            f"{model.id} ({dtype.id}) does not fit on {deployment.tensor_parallel}x {gpu.id}: "
            f"{memory.reason}"
        )
    step = StepModel(
        gpu,
        model,
        dtype,
        factors,
        tensor_parallel=deployment.tensor_parallel,
        kv_bytes_per_element=catalog.kv_bytes_per_element,
        unmeasured_matmul_fraction=catalog.unmeasured_matmul_fraction,
        layer_floor_s=gpu.layer_floor_s(catalog.unmeasured_layer_floor_us),
    )
    budget, max_seqs = engine_limits(gpu, catalog)
    return step, memory, budget, max_seqs


def predict(
    catalog: Catalog,
    factors: Factors,
    deployment: Deployment,
    workload: Workload,
    *,
    router: str = "least-loaded",
    abort_after: float | None = None,
) -> Prediction:
    step, memory, budget, max_seqs = step_model_for(catalog, factors, deployment)
    result = simulate(
        step,
        workload,
        replicas=deployment.replicas,
        max_batched_tokens=budget,
        max_seqs=max_seqs,
        kv_capacity_tokens=memory.kv_tokens,
        router=router,
        abort_after=abort_after,
        block_size=catalog.block_size,
    )
    return Prediction(deployment, workload, result, memory)


def unloaded_latency(
    catalog: Catalog,
    factors: Factors,
    deployment: Deployment,
    prompt: int,
    output: int,
    prefix_cache_hit: float = 0.0,
) -> tuple[float, float]:
    """(TTFT, latency) of a request alone: the floor no replica count can beat."""
    step, _, budget, _ = step_model_for(catalog, factors, deployment)
    cached = cached_prompt_tokens(prompt, prefix_cache_hit, catalog.block_size)
    return step.unloaded_latency(prompt, output, budget, cached)
