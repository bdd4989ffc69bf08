"""Sizing for a typing team: which GPUs, how many, so the team sees its suggestions.

``coderig plan --developers N --workload typing`` plans for the load ``coderig bench typing``
generates: the same script (:func:`coderig.plan.typing_load.typing_load`, same traffic code and
seed), every developer typing at once for the simulated duration (the peak: a typing team has
no quieter per-second percentile to size for), each request cancelled at the developer's next
keystroke and continuing the prefix of their previous one.

What is sized for is the share of suggestions *shown* (complete before the next keystroke),
not a latency percentile: a slow suggestion is not late, it is never seen. Some suggestions are
never shown however many GPUs serve them, because the developer types again sooner than any
model answers; so the target is relative to a ceiling, the share shown when every developer
has a replica to themselves. By default the plan allows ``max_lost`` (5 %) below the best
ceiling among the full-precision (bf16) options as deployed plainly (each at the smallest
tensor parallelism that holds the model). Every option is held to that same share: one whose
own ceiling is under it is infeasible, as an option whose idle latency misses the SLO is in the
latency plan; a quantised or wider deployment may reach it more cheaply. ``min_shown`` sets
the share directly.

For each (GPU, dtype) the smallest tensor parallelism that holds the model is tried first, then
wider ones while they can still be cheaper; the replica count is searched as the latency
plan searches it (:func:`coderig.plan.sizing.fewest_replicas`). The script is generated once
and replayed on every option: tokens are estimated from characters for catalog models, the
same for all of them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from coderig.on_hours import Schedule
from coderig.plan.catalog import Catalog
from coderig.plan.cost import Cost, cold_start_seconds, monthly_cost
from coderig.plan.memory import TP_DEGREES, fit
from coderig.plan.predict import Deployment
from coderig.plan.roofline import Factors
from coderig.plan.simulate import simulate_requests
from coderig.plan.sizing import bill_key, deployment_fields, fewest_replicas
from coderig.plan.typing_load import TypingLoad, TypingOutcome, catalog_engine, typing_outcome

__all__ = ["TypingOption", "TypingPlan", "plan_typing"]

#: Default share of the best ceiling a plan may lose to load.
DEFAULT_MAX_LOST = 0.05


@dataclass(frozen=True)
class TypingOption:
    """One (GPU, dtype) row: the smallest deployment meeting the target, or why none does."""

    gpu: str
    model: str
    dtype: str
    tensor_parallel: int
    replicas: int | None
    feasible: bool
    reason: str
    #: Share shown with a replica per developer (nothing queues; only speed and typing count).
    ceiling: float
    outcome: TypingOutcome | None = None
    cost: Cost | None = None

    @property
    def gpus(self) -> int | None:
        return None if self.replicas is None else self.replicas * self.tensor_parallel

    def to_dict(self) -> dict:
        out = {**deployment_fields(self), "ceiling_shown_share": self.ceiling}
        if self.outcome is not None:
            out.update({f"predicted_{k}": v for k, v in self.outcome.to_dict().items()})
        if self.cost is not None:
            out.update(self.cost.to_dict())
        return out


@dataclass(frozen=True)
class TypingPlan:
    """Everything one typing plan decided, before any formatting."""

    model: str
    load: TypingLoad
    output_tokens: int
    max_lost: float | None  # None when the target was given as min_shown
    target: float  # share of requests that must be shown
    best_ceiling: float
    options: list[TypingOption]
    schedule: str
    always_on: bool
    seat_price: float

    @property
    def recommendation(self) -> TypingOption | None:
        return next((o for o in self.options if o.feasible), None)

    def monthly(self, option: TypingOption) -> float | None:
        """The bill the ranking uses: scale-to-zero when a schedule is set, else 24x7."""
        if option.cost is None:
            return None
        return option.cost.monthly(scheduled=not self.always_on)

    def to_dict(self) -> dict:
        best = self.recommendation
        load = self.load
        return {
            "workload": "typing",
            "model": self.model,
            "developers": load.developers,
            "duration": load.duration,
            "requests": len(load.requests.arrival),
            "rate": load.rate,
            "mean_prompt_tokens": load.mean_prompt_tokens,
            "shared_prompt_share": load.shared_share,
            "output_tokens": self.output_tokens,
            "max_lost": self.max_lost,
            "target_shown_share": self.target,
            "best_ceiling_shown_share": self.best_ceiling,
            "schedule": self.schedule,
            "options": [o.to_dict() for o in self.options],
            "recommendation": None
            if best is None
            else {**best.to_dict(), "monthly": self.monthly(best)},
            "seat_price": self.seat_price,
        }


def plan_typing(
    catalog: Catalog,
    factors: Factors,
    load: TypingLoad,
    *,
    model: str,
    gpus: Sequence[str],
    dtypes: Sequence[str],
    output_tokens: int,
    schedule: Schedule,
    max_lost: float = DEFAULT_MAX_LOST,
    min_shown: float | None = None,
    hours_per_month: float = 720.0,
    seat_price: float = 39.0,
    max_replicas: int = 64,
) -> TypingPlan:
    """Size every (GPU, dtype) for ``load`` (a catalog typing load: see
    :func:`coderig.plan.typing_load.catalog_typing_load`) and rank the options by the bill."""
    model_spec = catalog.model(model)
    developers = load.developers

    def outcome(dep: Deployment) -> TypingOutcome:
        engine = catalog_engine(catalog, factors, dep)
        run = simulate_requests(engine.step, load.requests, replicas=dep.replicas, **engine.limits)
        return typing_outcome(load, run)

    # Every (GPU, dtype) that holds the model, and its ceiling as deployed plainly (the
    # smallest tensor parallelism): the best of these sets the default target.
    candidates: list[tuple[str, str, list[int], float]] = []
    rows: list[TypingOption] = []
    for gpu_id in gpus:
        gpu = catalog.gpu(gpu_id)
        for dtype_id in dtypes:
            dtype = catalog.dtype(dtype_id)
            fits = [fit(gpu, model_spec, dtype, catalog, tensor_parallel=tp) for tp in TP_DEGREES]
            fitting = [f.tensor_parallel for f in fits if f.fits]
            if not fitting:
                reason = f"does not fit in 8x {gpu.id}: {fits[0].reason}"
                rows.append(
                    TypingOption(gpu.id, model_spec.id, dtype.id, 0, None, False, reason, 0)
                )
                continue
            plain = outcome(Deployment(gpu.id, model_spec.id, dtype.id, fitting[0], developers))
            candidates.append((gpu.id, dtype.id, fitting, plain.shown_share))
    # Full precision is the reference when considered: a quantised option is held to the
    # same bar (and is often the cheaper way to reach it), it does not raise it.
    reference = [c for c in candidates if c[1] == "bf16"] or candidates
    best_ceiling = max((c[3] for c in reference), default=0.0)
    target = min_shown if min_shown is not None else (1 - max_lost) * best_ceiling
    for gpu_id, dtype_id, fitting, plain in candidates:
        rows.append(
            _size_one(
                catalog, gpu_id, model_spec.id, dtype_id, fitting, plain, target, outcome,
                schedule=schedule, hours_per_month=hours_per_month, developers=developers,
                seat_price=seat_price, max_replicas=max_replicas,
            )
        )  # fmt: skip

    def key(option: TypingOption):
        if not option.feasible or option.cost is None or option.outcome is None:
            return (1, math.inf, 0, -option.ceiling)
        # then the larger share shown
        return (0, *bill_key(option.cost, option.dtype, schedule), -option.outcome.shown_share)

    return TypingPlan(
        model=model_spec.id,
        load=load,
        output_tokens=output_tokens,
        max_lost=None if min_shown is not None else max_lost,
        target=target,
        best_ceiling=best_ceiling,
        options=sorted(rows, key=key),
        schedule=schedule.describe(),
        always_on=schedule.is_always_on,
        seat_price=seat_price,
    )


def _size_one(
    catalog: Catalog,
    gpu_id: str,
    model: str,
    dtype_id: str,
    fitting: list[int],
    plain: float,
    target: float,
    outcome,
    *,
    schedule: Schedule,
    hours_per_month: float,
    developers: int,
    seat_price: float,
    max_replicas: int,
) -> TypingOption:
    """The cheapest deployment of one (GPU, dtype) meeting ``target``, or why there is none.
    ``plain``: the ceiling at the smallest tensor parallelism, ``fitting[0]``."""
    gpu, dtype = catalog.gpu(gpu_id), catalog.dtype(dtype_id)
    best: TypingOption | None = None
    ceilings: dict[int, float] = {fitting[0]: plain}
    for tp in fitting:
        if best is not None and best.cost is not None:
            # A wider TP costs at least tp GPUs; stop once that alone is dearer.
            if tp * gpu.price_per_hour * hours_per_month >= best.cost.monthly_always_on:
                break
        if tp not in ceilings:
            ceilings[tp] = outcome(Deployment(gpu_id, model, dtype_id, tp, developers)).shown_share
        if ceilings[tp] < target:
            continue
        limit = max_replicas if best is None else min(max_replicas, best.gpus // tp)
        found = _fewest_meeting(
            lambda r, tp=tp: outcome(Deployment(gpu_id, model, dtype_id, tp, r)),
            target,
            max(limit, 1),
        )
        if found is None:
            continue
        replicas, result = found
        cost = monthly_cost(
            gpu,
            replicas * tp,
            schedule=schedule,
            cold_start_s=cold_start_seconds(catalog.model(model), dtype, catalog),
            hours_per_month=hours_per_month,
            developers=developers,
            seat_price=seat_price,
        )
        if best is None or cost.monthly_always_on < best.cost.monthly_always_on:
            best = TypingOption(
                gpu_id, model, dtype_id, tp, replicas, True, "", ceilings[tp], result, cost
            )
    if best is not None:
        return best
    top_tp, top = max(ceilings.items(), key=lambda c: c[1])
    reason = (
        f"even with a replica per developer, {top:.1%} shown < {target:.1%}"
        if top < target
        else f"below {target:.1%} shown even with {max_replicas} replicas"
    )
    return TypingOption(gpu_id, model, dtype_id, top_tp, None, False, reason, top)


def _fewest_meeting(outcome, target: float, max_replicas: int):
    """The fewest replicas whose share shown meets ``target``, with their outcome; None if
    ``max_replicas`` do not."""
    outcomes: dict[int, TypingOutcome] = {}

    def meets(replicas: int) -> bool:
        if replicas not in outcomes:
            outcomes[replicas] = outcome(replicas)
        return outcomes[replicas].shown_share >= target

    replicas = fewest_replicas(meets, max_replicas)
    return None if replicas is None else (replicas, outcomes[replicas])
