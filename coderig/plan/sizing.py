"""How many replicas of which GPU: the smallest count whose simulated p99 meets the SLO.

For each GPU and weight dtype the smallest tensor-parallel degree that holds the model is
tried first; if even an idle replica cannot answer within the SLO (the latency floor: one
prefill plus every decode step alone) a wider tensor-parallel degree is tried, and if none
helps the option is reported as infeasible with its floor, without simulating. Otherwise the
replica count is doubled until the simulated p99 at the peak rate meets the SLO, then
bisected. Hopeless simulations stop early (``abort_after``), which keeps a sweep over the whole
catalog to a few seconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from coderig.on_hours import Schedule
from coderig.plan.catalog import Catalog
from coderig.plan.cost import Cost, cold_start_seconds, monthly_cost
from coderig.plan.memory import TP_DEGREES, Fit, fit
from coderig.plan.predict import Deployment, predict, unloaded_latency
from coderig.plan.roofline import Factors
from coderig.plan.simulate import SimResult, Workload

__all__ = [
    "Option",
    "bill_key",
    "deployment_fields",
    "fewest_replicas",
    "replicas_for_slo",
    "size_options",
]


@dataclass
class Option:
    gpu: str
    model: str
    dtype: str
    tensor_parallel: int
    replicas: int | None
    feasible: bool
    reason: str
    floor_latency: float
    result: SimResult | None
    fit: Fit | None
    cost: Cost | None

    @property
    def gpus(self) -> int | None:
        return None if self.replicas is None else self.replicas * self.tensor_parallel

    def to_dict(self) -> dict:
        out = {
            **deployment_fields(self),
            "floor_latency": self.floor_latency,
            "max_batch_at_max_model_len": self.fit.max_batch if self.fit else None,
        }
        if self.result is not None:
            out.update({f"predicted_{k}": v for k, v in self.result.to_dict().items()})
        if self.cost is not None:
            out.update(self.cost.to_dict())
        return out


def deployment_fields(option) -> dict:
    """The JSON fields naming a sized option (a latency or a typing plan's row)."""
    return {
        "gpu": option.gpu,
        "model": option.model,
        "dtype": option.dtype,
        "tensor_parallel": option.tensor_parallel,
        "replicas": option.replicas,
        "gpus": option.gpus,
        "feasible": option.feasible,
        "reason": option.reason,
    }


def replicas_for_slo(
    catalog: Catalog,
    factors: Factors,
    deployment: Deployment,
    workload: Workload,
    slo_p99: float,
    *,
    max_replicas: int = 64,
    router: str = "least-loaded",
) -> tuple[int | None, SimResult | None]:
    """Smallest replica count meeting ``p99 <= slo_p99`` and its simulation (None if none)."""
    cache: dict[int, SimResult] = {}
    abort_after = max(3.0 * slo_p99, 5.0)

    def run(replicas: int) -> SimResult:
        if replicas not in cache:
            dep = Deployment(
                deployment.gpu,
                deployment.model,
                deployment.dtype,
                deployment.tensor_parallel,
                replicas,
            )
            cache[replicas] = predict(
                catalog, factors, dep, workload, router=router, abort_after=abort_after
            ).result
        return cache[replicas]

    replicas = fewest_replicas(lambda r: run(r).latency_p99 <= slo_p99, max_replicas)
    return (None, None) if replicas is None else (replicas, run(replicas))


def fewest_replicas(ok: Callable[[int], bool], max_replicas: int) -> int | None:
    """The smallest count for which ``ok`` holds, or None if ``max_replicas`` do not: doubled
    until it holds, then bisected (``ok`` is taken to hold for every count above one that
    does, so a plan's simulations stay few)."""
    high = 1
    while not ok(high):
        if high >= max_replicas:
            return None
        high = min(high * 2, max_replicas)
    low = high // 2  # fails (or 0)
    while high - low > 1:
        mid = (low + high) // 2
        if ok(mid):
            high = mid
        else:
            low = mid
    return high


def bill_key(cost: Cost, dtype: str, schedule: Schedule) -> tuple[int, int]:
    """How plans rank feasible options: the bill they are sized for (scale-to-zero when a
    schedule is set), then, on equal bills (cold starts differ by cents), full precision."""
    dollars = cost.monthly(scheduled=not schedule.is_always_on)
    return round(dollars), {"bf16": 0, "fp8": 1}.get(dtype, 2)


def size_options(
    catalog: Catalog,
    factors: Factors,
    *,
    model: str,
    gpus: Iterable[str],
    dtypes: Iterable[str],
    workload: Workload,
    slo_p99: float,
    schedule: Schedule,
    hours_per_month: float = 720.0,
    developers: int | None = None,
    seat_price: float = 39.0,
    max_replicas: int = 64,
    router: str = "least-loaded",
) -> list[Option]:
    """Every (GPU, dtype) option, feasible ones ranked by monthly cost then p99."""
    model_spec = catalog.model(model)
    options: list[Option] = []
    for gpu_id in gpus:
        gpu = catalog.gpu(gpu_id)
        for dtype_id in dtypes:
            dtype = catalog.dtype(dtype_id)
            fits = [fit(gpu, model_spec, dtype, catalog, tensor_parallel=tp) for tp in TP_DEGREES]
            fitting = [f for f in fits if f.fits]
            if not fitting:
                options.append(
                    Option(
                        gpu.id,
                        model_spec.id,
                        dtype.id,
                        0,
                        None,
                        False,
                        f"does not fit in 8x {gpu.id}: {fits[0].reason}",
                        math.inf,
                        None,
                        None,
                        None,
                    )
                )
                continue
            best: Option | None = None
            floor = math.inf
            for memory in fitting:
                tp = memory.tensor_parallel
                if best is not None and best.cost is not None:
                    # A wider TP costs at least tp GPUs; stop once that alone is dearer.
                    if tp * gpu.price_per_hour * hours_per_month >= best.cost.monthly_always_on:
                        break
                dep = Deployment(gpu.id, model_spec.id, dtype.id, tp, 1)
                _, latency = unloaded_latency(
                    catalog,
                    factors,
                    dep,
                    workload.prompt_tokens,
                    workload.output_tokens,
                    workload.prefix_cache_hit,
                )
                floor = min(floor, latency)
                if latency > slo_p99:
                    continue
                limit = max_replicas
                if best is not None and best.gpus is not None:
                    limit = min(limit, max(1, best.gpus // tp))
                replicas, result = replicas_for_slo(
                    catalog, factors, dep, workload, slo_p99, max_replicas=limit, router=router
                )
                if replicas is None or result is None:
                    continue
                cost = monthly_cost(
                    gpu,
                    replicas * tp,
                    schedule=schedule,
                    cold_start_s=cold_start_seconds(model_spec, dtype, catalog),
                    hours_per_month=hours_per_month,
                    developers=developers,
                    seat_price=seat_price,
                )
                if (
                    best is None
                    or best.cost is None
                    or (cost.monthly_always_on < best.cost.monthly_always_on)
                ):
                    best = Option(
                        gpu.id,
                        model_spec.id,
                        dtype.id,
                        tp,
                        replicas,
                        True,
                        "",
                        latency,
                        result,
                        memory,
                        cost,
                    )
            if best is not None:
                options.append(best)
            elif floor > slo_p99:
                options.append(
                    Option(
                        gpu.id,
                        model_spec.id,
                        dtype.id,
                        fitting[0].tensor_parallel,
                        None,
                        False,
                        f"even idle, a request takes {floor:.2f}s > SLO",
                        floor,
                        None,
                        fitting[0],
                        None,
                    )
                )
            else:
                options.append(
                    Option(
                        gpu.id,
                        model_spec.id,
                        dtype.id,
                        fitting[0].tensor_parallel,
                        None,
                        False,
                        f"p99 above SLO even with {max_replicas} replicas",
                        floor,
                        None,
                        fitting[0],
                        None,
                    )
                )

    def key(option: Option):
        if not option.feasible or option.cost is None or option.result is None:
            return (1, math.inf, option.floor_latency)
        # then the lower p99
        return (0, *bill_key(option.cost, option.dtype, schedule), option.result.latency_p99)

    return sorted(options, key=key)
