"""Discrete-event simulation of continuous batching, the way vLLM schedules (after vidur).

One event per engine step, not per token: within a replica every running decode advances one
token per step, so a sequence's finishing step is known when its decode starts (a heap), and
the batch's total context is ``batch * step + constant`` (two running sums). That keeps a
replica-minute of simulation to a few thousand cheap iterations.

Per step, as vLLM V1's scheduler does (``vllm/v1/core/sched/scheduler.py``, ``schedule()``;
vidur's Sarathi/vLLM replica schedulers are the same idea):

1. running requests first, oldest first: every running decode gets one token of the
   ``max_num_batched_tokens`` budget, then prompts already being prefilled continue within
   what is left. Each needs KV blocks for the tokens it computes this step
   (``KVCacheManager.allocate_slots``); when the free blocks run out, the NEWEST running
   request is preempted (``self.running.pop()``, ``_preempt_request``: its blocks are freed and
   it goes back to the front of the waiting queue, to be recomputed: prompt plus the tokens it
   had generated, which it keeps);
2. only if nothing was preempted in this step (``if not preempted_reqs``), waiting requests
   are admitted in arrival order while budget, ``max_num_seqs`` and free blocks for their first
   chunk last. Blocks are taken as tokens are computed, not reserved for the whole output;
   the part of a prompt found in the prefix cache (``Workload.prefix_cache_hit`` or
   ``identical_prompts``) is not computed, only attended, and a prefix that running requests
   share is held once (blocks are reference-counted and found by hash);
3. when prefill saturates the engine (more prompt tokens waiting than the budget leaves after
   the decodes), every step is a full budget of prefill chunks plus all running decodes, so
   the decodes advance one token per long, compute-bound step while the queue drains FCFS;
4. the step takes :meth:`StepModel.step_time` of the resulting mix; a prompt whose last chunk
   ran produces its first token at the end of the step;
5. the API-server process then handles the step's tokens (``frontend_s_per_token`` each), one
   step after the other, and a token reaches its client when that is done.

Requests arrive at a constant rate or as a seeded Poisson process for a finite ``duration``
(as a ``coderig bench`` attack does) and are routed to the replica with the fewest outstanding
requests (or round-robin). Above capacity the waiting queue and the batch grow for as long as
the attack lasts, so latency depends on the duration, as it does in a real bench run.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from dataclasses import asdict, dataclass

import numpy as np

from coderig.plan.roofline import StepModel, masked_pairs
from coderig.traffic.arrivals import send_times

__all__ = [
    "Requests",
    "Run",
    "SimResult",
    "Workload",
    "arrival_times",
    "cached_prompt_tokens",
    "simulate",
    "simulate_requests",
]


@dataclass(frozen=True)
class Workload:
    """An attack: ``rate`` requests/s for ``duration`` s, each ``prompt_tokens`` in and
    ``output_tokens`` out.

    ``prefix_cache_hit`` is the fraction of each prompt that vLLM finds in its prefix cache
    (automatic prefix caching, on by default in V1) and therefore does not prefill; it is
    rounded down to whole KV blocks, and at least the prompt's last token is always computed,
    as vLLM does. ``identical_prompts`` describes a load test that repeats ONE request body
    (``vegeta attack -body req.json``, ``ab -p``): the first request a replica sees prefills
    the whole prompt, every later one finds all its whole blocks cached, whatever
    ``prefix_cache_hit`` says.
    """

    rate: float
    duration: float
    prompt_tokens: int = 700
    output_tokens: int = 128
    arrival: str = "constant"  # or "poisson"
    seed: int = 0
    prefix_cache_hit: float = 0.0
    identical_prompts: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.prefix_cache_hit <= 1.0:
            raise ValueError(f"prefix_cache_hit must be in [0, 1], not {self.prefix_cache_hit}")


def cached_prompt_tokens(prompt: int, hit: float, block_size: int = 16) -> int:
    """Prompt tokens served from the prefix cache for a hit fraction ``hit``.

    vLLM caches whole blocks only, and recomputes at least the last prompt token so that the
    step yields its logits (``max_cache_hit_length = num_tokens - 1`` in the KV-cache manager).
    """
    if prompt <= 1 or hit <= 0:
        return 0
    block = max(1, int(block_size))
    most = (prompt - 1) // block * block
    return min(most, int(hit * prompt) // block * block)


@dataclass
class SimResult:
    requests: int
    completed: int
    latency_p50: float
    latency_p90: float
    latency_p99: float
    ttft_p50: float
    ttft_p90: float
    ttft_p99: float
    mean_batch: float
    max_waiting: int
    aborted: bool = False
    #: Busy fraction of the busiest replica's API-server process over the attack (>= 1: its
    #: queue grew for the whole run, the replica is CPU-bound whatever its GPU).
    frontend_utilization: float = 0.0
    #: Requests preempted for KV-cache space (and recomputed later), over all replicas.
    preemptions: int = 0
    #: Requests the gateway's admission control refused (429) instead of queueing them.
    shed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def arrival_times(rate: float, duration: float, arrival: str = "constant", seed: int = 0):
    """Send times of an attack, as an array: exactly the times ``coderig bench attack`` sends
    at for the same rate, duration, arrival process and seed (one shared function)."""
    if rate <= 0 or duration <= 0:
        return np.zeros(0)
    return np.asarray(send_times(rate, duration, arrival=arrival, seed=seed), dtype=float)


#: Request phases in the simulator (vLLM: WAITING/PREEMPTED, RUNNING prefill or decode).
_WAITING, _PREFILL, _DECODE, _DONE = 0, 1, 2, 3


def _kv_used(decode_kv: float, prefill_kv: float, seqs: int, shared: int, slack: float) -> float:
    """KV-cache tokens in use on a replica, as vLLM V1's KV-cache manager counts blocks.

    * Blocks are allocated as tokens are computed (``KVCacheManager.allocate_slots`` for the
      tokens scheduled this step), not reserved for the whole output up front: a decoding
      request holds its context, a prefilling one what it has computed (and its cached hit).
    * A sequence's last block is partly empty: ``slack`` tokens each on average.
    * Blocks are reference-counted and found by content hash (automatic prefix caching), so a
      prefix that ``seqs`` running requests share (one repeated request body: ``shared``
      tokens) is held ONCE, not once per request.
    """
    return decode_kv + prefill_kv + slack * seqs - shared * max(seqs - 1, 0)


class _Replica:
    __slots__ = (
        "model",
        "budget",
        "max_seqs",
        "kv_capacity",
        "now",
        "step",
        "waiting",
        "prefilling",
        "prefill_kv",
        "heap",
        "batch",
        "base_sum",
        "order",
        "outstanding",
        "batch_area",
        "busy_time",
        "admitted",
        "preemptions",
        "kv_safe_until",
        "frontend_free",
        "frontend_busy",
        "prefilled",
        "since",
        "service",
        "unsaved",
    )

    def __init__(self, model: StepModel, budget: int, max_seqs: int, kv_capacity: int) -> None:
        self.model = model
        self.budget = budget
        self.max_seqs = max_seqs
        self.kv_capacity = kv_capacity
        self.now = 0.0
        self.step = 0
        self.waiting: deque[int] = deque()
        self.prefilling: list[list[int]] = []  # [request, tokens in KV cache, tokens to hold]
        self.prefill_kv = 0  # KV tokens held by the prefilling requests
        self.heap: list[tuple[int, int, int, int]] = []  # (finish step, request, base, version)
        self.batch = 0
        self.base_sum = 0
        #: (request, admission) of running requests, oldest first (vLLM's running list)
        self.order: list[tuple[int, int]] = []
        self.outstanding = 0
        self.batch_area = 0.0
        self.busy_time = 0.0
        self.admitted = 0  # requests this replica has started; its first one finds no cache
        self.preemptions = 0
        self.kv_safe_until = 0  # decode-only steps before this one cannot run out of KV blocks
        self.frontend_free = 0.0  # when the API-server process has caught up
        self.frontend_busy = 0.0
        self.prefilled = 0  # prompt tokens computed (not found cached), recomputation included
        self.since: dict[int, float] = {}  # running request -> when it got its slot
        self.service: deque[float] = deque(maxlen=64)  # slot times of recent finished requests
        self.unsaved = 0  # tokens in slots that went idle since a request last started

    def has_work(self) -> bool:
        return self.batch > 0 or bool(self.prefilling) or bool(self.waiting)


def simulate(
    step_model: StepModel,
    workload: Workload,
    *,
    replicas: int = 1,
    max_batched_tokens: int = 8192,
    max_seqs: int = 1024,
    kv_capacity_tokens: int = 10**9,
    router: str = "least-loaded",
    abort_after: float | None = None,
    block_size: int = 16,
    cold_tokens: int | None = None,
    cold_hold: float = 0.0,
    max_queue: int | None = None,
    max_queue_wait: float | None = None,
) -> SimResult:
    """Run the attack through ``replicas`` identical replicas and summarise latencies.

    ``abort_after``: stop early (``aborted=True``) once any request has waited that many
    seconds without finishing; the replica search uses it to give up on hopeless counts fast.
    ``cold_tokens``/``cold_hold``: the gateway holds cold prompts; ``max_queue``/
    ``max_queue_wait``: its admission control sheds load (:func:`simulate_requests`).

    Each replica has two servers in series. The engine (GPU plus the engine-core process that
    schedules it) runs the steps; the API-server process then turns every token a step
    produced into output for its request (detokenising, request bookkeeping, response
    building and streaming), one step's outputs after the other, at
    ``StepModel.frontend_s_per_token`` per token. vLLM runs the two in separate processes
    connected by a queue, so the engine never waits for the API server: when the API server
    is slower than the engine produces tokens, its queue, and every request's latency, grow
    for as long as the load lasts. A token reaches the client when the API server has
    processed the step that produced it.

    KV cache (``kv_capacity_tokens`` per replica) is used the way vLLM V1's KV-cache manager
    uses it (see :func:`_kv_used`): blocks are taken as tokens are computed, a prefix shared
    by several requests is held once, and when a step cannot get the blocks it needs the
    newest running request is preempted and later recomputed.
    """
    arrivals = arrival_times(workload.rate, workload.duration, workload.arrival, workload.seed)
    n = len(arrivals)
    if n == 0:
        nan = float("nan")
        return SimResult(0, 0, nan, nan, nan, nan, nan, nan, 0.0, 0)
    prompt, output = int(workload.prompt_tokens), max(1, int(workload.output_tokens))
    if workload.identical_prompts:
        cached_warm = cached_prompt_tokens(prompt, 1.0, block_size)
        cached_cold = 0
        shared = cached_warm  # one copy of the body's blocks serves every running request
    else:
        cached_warm = cached_cold = cached_prompt_tokens(
            prompt, workload.prefix_cache_hit, block_size
        )
        shared = 0  # each developer's prefix is their own
    requests = Requests(
        arrival=arrivals,
        prompt=np.full(n, prompt),
        cached=np.full(n, cached_warm),
        output=np.full(n, output),
    )
    run = simulate_requests(
        step_model,
        requests,
        replicas=replicas,
        max_batched_tokens=max_batched_tokens,
        max_seqs=max_seqs,
        kv_capacity_tokens=kv_capacity_tokens,
        router=router,
        abort_after=abort_after,
        block_size=block_size,
        cached_cold=cached_cold,
        shared=shared,
        cold_tokens=cold_tokens,
        cold_hold=cold_hold,
        max_queue=max_queue,
        max_queue_wait=max_queue_wait,
    )
    return run.summary(max(float(arrivals[-1]), workload.duration, 1e-9))


@dataclass(frozen=True)
class Requests:
    """A load given request by request, as a script sends it (a typing team): arrival times
    (sorted), prompt tokens, the part of each prompt already in the prefix cache when it
    arrives, output tokens, and when the client gives up on it (``cancel``; absent = never:
    the engine stops a cancelled request at its next step, as vLLM aborts and llama-server
    releases the slot of a closed connection)."""

    arrival: np.ndarray
    prompt: np.ndarray
    cached: np.ndarray
    output: np.ndarray
    cancel: np.ndarray | None = None
    #: The request whose prompt this one continues (a developer's previous one), or -1. Then
    #: ``cached`` is what the two prompts share, and only as much of it is found as the engine
    #: had computed of the parent when this one is admitted (a parent cancelled mid-prefill
    #: left part of its prompt; llama-server keeps it in the slot, vLLM in its prefix cache).
    parent: np.ndarray | None = None


@dataclass
class Run:
    """What happened to each request: first token and end (NaN if never), cancelled or not."""

    requests: Requests
    first: np.ndarray
    end: np.ndarray
    cancelled: np.ndarray
    overhead: float
    max_waiting: int
    aborted: bool
    mean_batch: float
    frontend_busy: float
    preemptions: int
    #: prompt tokens the engines computed (the rest of the prompts sent were found cached,
    #: or never reached because their request was cancelled first)
    prefilled: int = 0
    steps: int = 0  # engine steps (forward passes), all replicas
    busy: float = 0.0  # engine seconds spent in steps, all replicas
    #: refused by the gateway's admission control (never run)
    shed: np.ndarray | None = None

    @property
    def answered(self) -> np.ndarray:
        """Requests that finished in time for their client (not cancelled first)."""
        return ~np.isnan(self.end) & ~self.cancelled

    @property
    def latency(self) -> np.ndarray:
        """Client-side latency of each request (NaN where it never finished)."""
        return self.end - self.requests.arrival + self.overhead

    @property
    def ttft(self) -> np.ndarray:
        return self.first - self.requests.arrival + self.overhead

    def summary(self, span: float) -> SimResult:
        done = self.answered
        if self.aborted or not done.any():
            inf = float("inf")
            lat_q = ttft_q = (inf, inf, inf)
        else:
            lat_q = tuple(np.percentile(self.latency[done], [50, 90, 99]))
            ttft_q = tuple(np.percentile(self.ttft[done], [50, 90, 99]))
        return SimResult(
            requests=len(self.end),
            completed=int(done.sum()),
            latency_p50=float(lat_q[0]),
            latency_p90=float(lat_q[1]),
            latency_p99=float(lat_q[2]),
            ttft_p50=float(ttft_q[0]),
            ttft_p90=float(ttft_q[1]),
            ttft_p99=float(ttft_q[2]),
            mean_batch=self.mean_batch,
            max_waiting=self.max_waiting,
            aborted=self.aborted,
            frontend_utilization=self.frontend_busy / span,
            preemptions=self.preemptions,
            shed=int(self.shed.sum()) if self.shed is not None else 0,
        )


def simulate_requests(
    step_model: StepModel,
    requests: Requests,
    *,
    replicas: int = 1,
    max_batched_tokens: int = 8192,
    max_seqs: int = 1024,
    kv_capacity_tokens: int = 10**9,
    router: str = "least-loaded",
    abort_after: float | None = None,
    block_size: int = 16,
    cached_cold: int | None = None,
    shared: int = 0,
    cold_tokens: int | None = None,
    cold_hold: float = 0.0,
    max_queue: int | None = None,
    max_queue_wait: float | None = None,
) -> Run:
    """The simulator of :func:`simulate` on an explicit, possibly cancelled, request list.

    ``cached_cold``: what the first request a replica admits finds cached instead of its own
    ``cached`` (a repeated body is not cached before it is first sent); ``shared``: prompt
    tokens every running request holds in common (one repeated body), held once;
    ``cold_tokens``/``cold_hold``: a request with more than ``cold_tokens`` of its prompt not
    cached waits up to ``cold_hold`` seconds for the replica to run nothing, while the others
    go first (coderig serve's ``--cold-prompt-tokens`` and ``--cold-hold``; None: no hold).
    ``max_queue``/``max_queue_wait``: coderig serve's admission control (``--max-queue``,
    ``--max-queue-wait``) as it works for one client: a request that finds ``max_queue``
    waiting, or whose wait serve estimates above ``max_queue_wait`` (once every slot is busy:
    the requests queued ahead plus one, times the median slot time of the last 64 requests
    that finished, over the slots), is refused at once and never runs.
    """
    arrivals = requests.arrival
    n = len(arrivals)
    prompts = [int(x) for x in requests.prompt]
    outputs = [max(1, int(x)) for x in requests.output]
    cached_of = [int(x) for x in requests.cached]
    parents = [int(x) for x in requests.parent] if requests.parent is not None else None
    computed = [0] * n  # prompt tokens of each request in the KV cache so far
    slack = block_size / 2.0  # a sequence's last block is half empty on average
    need = max(p + o for p, o in zip(prompts, outputs, strict=True)) if n else 0
    if need + slack > kv_capacity_tokens:
        raise ValueError(
            f"a request needs {need} KV tokens but a replica holds {kv_capacity_tokens}"
        )
    first = np.full(n, np.nan)
    end = np.full(n, np.nan)
    # Per-request state as plain lists: indexed once per event, where numpy scalars are slow.
    phase = [_WAITING] * n
    generated = [0] * n  # tokens a preempted request already produced
    version = [0] * n  # invalidates the heap entry of a preempted decode
    admissions = [0] * n  # times admitted: tells stale running entries
    dec_entry: dict[int, tuple[int, int]] = {}  # decoding request -> (finish step, base)
    reps = [
        _Replica(step_model, max_batched_tokens, max_seqs, kv_capacity_tokens)
        for _ in range(replicas)
    ]
    step_time = step_model.step_time
    per_token_fe = step_model.frontend_s_per_token
    max_waiting = 0
    aborted = False

    per_decode, weights_s, per_pair, per_seq_s, fixed_s = step_model.decode_constants()
    overlap = step_model.overlap
    per_masked = step_model.masked_pair_s
    per_moved = step_model.moved_token_s

    def kv_used(rep: _Replica, extra_seqs: int = 0) -> float:
        return _kv_used(
            rep.batch * rep.step + rep.base_sum,
            rep.prefill_kv,
            rep.batch + len(rep.prefilling) + extra_seqs,
            shared,
            slack,
        )

    def preempt_newest(rep: _Replica) -> bool:
        """vLLM V1 ``Scheduler._preempt_request`` on ``running.pop()``: free the newest
        running request's blocks and put it first in the waiting queue, to be recomputed."""
        if rep.batch + len(rep.prefilling) <= 1:
            return False  # a lone request always fits (checked before the run)
        order = rep.order
        while (
            phase[order[-1][0]] not in (_PREFILL, _DECODE)
            or order[-1][1] != admissions[order[-1][0]]
        ):
            order.pop()  # finished, or a stale entry from before an earlier preemption
        req = order.pop()[0]
        if phase[req] == _DECODE:
            finish, base = dec_entry.pop(req)
            generated[req] = outputs[req] - (finish - rep.step)
            version[req] += 1
            rep.batch -= 1
            rep.base_sum -= base
        else:
            item = next(i for i in rep.prefilling if i[0] == req)
            rep.prefilling.remove(item)
            rep.prefill_kv -= item[1]
        phase[req] = _WAITING
        rep.waiting.appendleft(req)
        rep.preemptions += 1
        return True

    def finished(rep: _Replica, req: int, at: float) -> None:
        if per_moved:
            rep.unsaved += prompts[req] + outputs[req]  # its slot is saved at the next start
        since = rep.since.pop(req, None)
        if since is not None:
            rep.service.append(at - since)

    def admits(rep: _Replica) -> bool:
        """coderig serve's ``Admission.admits`` for a request of the one client."""
        if max_queue is not None and len(rep.waiting) >= max_queue:
            return False
        if max_queue_wait is None or rep.batch + len(rep.prefilling) < rep.max_seqs:
            return True
        if not rep.service:
            return True
        typical = sorted(rep.service)[len(rep.service) // 2]
        return (len(rep.waiting) + 1) * typical / rep.max_seqs <= max_queue_wait

    def cached_for(rep: _Replica, req: int) -> int:
        """Prompt tokens of ``req`` the replica finds in its cache if admitted now."""
        if cached_cold is not None and rep.admitted == 0:
            return cached_cold
        if parents is not None and parents[req] >= 0:
            return min(cached_of[req], computed[parents[req]])
        return cached_of[req]

    def first_admissible(rep: _Replica) -> int:
        """The oldest waiting request that may start now (-1: none): a cold one (more than
        ``cold_tokens`` of its prompt to compute) only on a replica that runs nothing, or once
        it has waited ``cold_hold``: coderig serve's --cold-hold."""
        idle = rep.batch == 0 and not rep.prefilling
        for req in rep.waiting:
            if (
                idle
                or prompts[req] - cached_for(rep, req) <= cold_tokens
                or rep.now - arrivals[req] >= cold_hold
            ):
                return req
        return -1

    def run_step(rep: _Replica) -> None:
        batch = rep.batch
        finishing: list[list[int]] = []
        pairs = batch * rep.step + rep.base_sum  # decodes attend their whole context
        decode_only = not rep.prefilling and not rep.waiting
        if decode_only and rep.step >= rep.kv_safe_until:
            # KV grows by `batch` tokens a decode-only step, so the step at which it would run
            # out is known; until then no step needs the check (finishing requests only push it
            # later; new decodes come through the general path, which resets it).
            room = rep.kv_capacity - (pairs + slack * batch - shared * (batch - 1))  # _kv_used
            rep.kv_safe_until = rep.step + int(room // batch) + 1 if room >= 0 else 0
        if decode_only and rep.step < rep.kv_safe_until:
            # Decode-only step (most steps): step_time() folded into its constants.
            gemm = per_decode * batch
            if not overlap:
                gemm += weights_s
            elif gemm < weights_s:
                gemm = weights_s
            dt = gemm + per_pair * pairs + per_seq_s * batch + fixed_s
            if per_masked:
                dt += per_masked * (batch - 1) * pairs  # masked_pairs(batch, pairs)
            emitted = batch
        else:
            rep.kv_safe_until = 0  # the batch may change in this step: check the next one
            # Running requests first (decodes, then prefills already started, oldest first):
            # preempt the newest until their blocks for this step fit.
            preempted = False
            n_seqs = batch + len(rep.prefilling)
            used = pairs + rep.prefill_kv + slack * n_seqs  # kv_used(rep), inlined: every step
            if shared and n_seqs > 1:
                used -= shared * (n_seqs - 1)
            # Cheap test first: even a full budget of prefill chunks fits (the usual case).
            while used + max(rep.budget - rep.batch, 0) > rep.kv_capacity:
                budget = rep.budget - rep.batch
                chunk_kv = 0
                for item in rep.prefilling:
                    if budget <= 0:
                        break
                    c = min(item[2] - item[1], budget)
                    chunk_kv += c
                    budget -= c
                if used + chunk_kv <= rep.kv_capacity or not preempt_newest(rep):
                    break
                preempted = True
                used = kv_used(rep)
            batch = rep.batch
            budget = rep.budget - batch
            tokens = batch
            pairs = batch * rep.step + rep.base_sum
            kv_read = pairs
            logits = batch
            seqs = batch + len(rep.prefilling)
            chunks: list[tuple[list[int], int]] = []
            moved = 0.0  # tokens llama-server copies between slots and its RAM cache first
            for item in rep.prefilling:
                if budget <= 0:
                    break
                c = min(item[2] - item[1], budget)
                chunks.append((item, c))
                budget -= c
                used += c
            # Waiting requests only when nothing was preempted (vLLM V1 schedules WAITING
            # requests only `if not preempted_reqs`), FCFS, while budget, max_num_seqs and
            # free blocks for their first chunk last.
            while (
                not preempted
                and rep.waiting
                and budget > 0
                and rep.batch + len(rep.prefilling) < rep.max_seqs
            ):
                req = rep.waiting[0] if cold_tokens is None else first_admissible(rep)
                if req < 0:
                    break  # only cold requests wait, held while the replica runs others
                cached = cached_for(rep, req)
                target = prompts[req] + generated[req]
                c = min(target - cached, budget)
                # Its cached blocks are taken back from the free queue and count as used,
                # unless they are the shared prefix that running requests already hold.
                held_by_others = shared if rep.batch + len(rep.prefilling) else 0
                grow = cached + c + slack - held_by_others
                if used + grow > rep.kv_capacity:
                    break
                if per_moved:
                    # llama-server saves every idle slot to its RAM cache, then loads the
                    # cached prefix of this prompt into the slot it takes
                    moved += rep.unsaved + cached
                    rep.unsaved = 0
                if req == rep.waiting[0]:
                    rep.waiting.popleft()
                else:
                    rep.waiting.remove(req)
                rep.admitted += 1
                rep.since[req] = rep.now
                phase[req] = _PREFILL
                admissions[req] += 1
                rep.order.append((req, admissions[req]))
                item = [req, cached, target]
                rep.prefilling.append(item)
                rep.prefill_kv += cached
                used += grow
                seqs += 1
                chunks.append((item, c))
                budget -= c
            decode_pairs, chunk_own = pairs, 0.0
            for item, c in chunks:
                done = item[1]
                chunk_own += c * (done + c)
                tokens += c
                rep.prefilled += c
                pairs += c * (done + (c + 1) / 2)
                kv_read += done + c
                item[1] = done + c
                rep.prefill_kv += c
                if computed[item[0]] < item[1]:
                    computed[item[0]] = item[1]
                if item[1] >= item[2]:
                    logits += 1
                    finishing.append(item)
            masked = masked_pairs(tokens, kv_read, decode_pairs + chunk_own) if per_masked else 0.0
            dt = step_time(tokens, logits, pairs, kv_read, seqs, masked) + per_moved * moved
            emitted = batch + len(finishing)  # every decode, and every prompt just finished
        rep.batch_area += batch * dt
        rep.busy_time += dt
        t = rep.now + dt
        rep.now = t
        k = rep.step + 1
        rep.step = k
        if per_token_fe > 0.0 and emitted:
            work = per_token_fe * emitted
            rep.frontend_busy += work
            free = rep.frontend_free
            delivered = (t if t > free else free) + work
            rep.frontend_free = delivered
        else:
            delivered = t
        heap = rep.heap
        while heap and heap[0][0] <= k:
            _, req, base, ver = heapq.heappop(heap)
            if ver != version[req]:
                continue  # preempted since; its new entry (if any) is elsewhere in the heap
            end[req] = delivered
            phase[req] = _DONE
            finished(rep, req, delivered)
            del dec_entry[req]
            rep.batch -= 1
            rep.base_sum -= base
            rep.outstanding -= 1
        for item in finishing:
            rep.prefilling.remove(item)
            req, held, target = item
            rep.prefill_kv -= held
            if np.isnan(first[req]):
                first[req] = delivered
            produced = generated[req] + 1  # the step after a prefill samples a token
            if produced >= outputs[req]:
                end[req] = delivered
                phase[req] = _DONE
                finished(rep, req, delivered)
                rep.outstanding -= 1
            else:
                base = target + 1 - k
                finish = k + outputs[req] - produced
                phase[req] = _DECODE
                dec_entry[req] = (finish, base)
                heapq.heappush(heap, (finish, req, base, version[req]))
                rep.batch += 1
                rep.base_sum += base

    def advance(rep: _Replica, until: float) -> None:
        while rep.now <= until and (rep.batch or rep.prefilling or rep.waiting):
            run_step(rep)
        if rep.now < until and not (rep.batch or rep.prefilling or rep.waiting):
            rep.now = until

    cancelled = np.zeros(n, dtype=bool)
    shed = np.zeros(n, dtype=bool)
    where: list[_Replica] = [reps[0]] * n  # the replica each request went to

    def cancel(req: int) -> None:
        """The client left: the engine drops the request at its next step, whatever its
        phase, and its slot and KV blocks go to the others."""
        if phase[req] == _DONE:
            if end[req] + step_model.request_overhead_s > cancel_at[req]:
                cancelled[req] = True  # finished, but after the editor had moved on
            return
        rep = where[req]
        if phase[req] == _WAITING:
            rep.waiting.remove(req)
        elif phase[req] == _PREFILL:
            item = next(i for i in rep.prefilling if i[0] == req)
            rep.prefilling.remove(item)
            rep.prefill_kv -= item[1]
        else:
            _, base = dec_entry.pop(req)
            version[req] += 1  # its heap entry is stale now
            rep.batch -= 1
            rep.base_sum -= base
        if per_moved and phase[req] != _WAITING:
            rep.unsaved += computed[req]  # its slot is saved at the next start
        phase[req] = _DONE
        cancelled[req] = True
        rep.since.pop(req, None)
        rep.outstanding -= 1

    cancel_at = (
        [float(x) for x in requests.cancel] if requests.cancel is not None else [math.inf] * n
    )
    if any(c <= float(a) for c, a in zip(cancel_at, arrivals, strict=True)):
        raise ValueError("a request is cancelled before it is sent")
    cancels = deque(sorted((c, i) for i, c in enumerate(cancel_at) if math.isfinite(c)))

    # Replicas never interact, so each is advanced only when something happens to it (a
    # request it gets, one of its requests cancelled) or a router compares them all.
    def cancel_until(t: float) -> None:
        """Every keystroke up to ``t``, each at its own time."""
        while cancels and cancels[0][0] <= t:
            tc, req = cancels.popleft()
            advance(where[req], tc)
            cancel(req)

    rr = 0
    for i in range(n):
        t = float(arrivals[i])
        cancel_until(t)
        if parents is not None and parents[i] >= 0:
            rep = where[parents[i]]  # to the prefix's replica, as coderig routes
            advance(rep, t)
        elif router == "round-robin":
            rep = reps[rr % replicas]
            rr += 1
            advance(rep, t)
        else:
            for rep in reps:
                advance(rep, t)
            rep = min(reps, key=lambda r: r.outstanding)
        if not rep.has_work():
            rep.now = max(rep.now, t)
        where[i] = rep
        if not admits(rep):
            shed[i] = True
            phase[i] = _DONE
            continue
        rep.waiting.append(i)
        rep.outstanding += 1
        if len(rep.waiting) > max_waiting:
            max_waiting = len(rep.waiting)
        if abort_after is not None:
            if rep.waiting and t - arrivals[rep.waiting[0]] > abort_after:
                aborted = True
                break
            if rep.frontend_free - t > abort_after:  # the API server is that far behind
                aborted = True
                break
    if not aborted:
        cancel_until(math.inf)
        horizon = None if abort_after is None else arrivals[-1] + abort_after
        for rep in reps:
            while rep.has_work():
                run_step(rep)
                if horizon is not None and max(rep.now, rep.frontend_free) > horizon:
                    aborted = True
                    break
    busy = sum(r.busy_time for r in reps)
    return Run(
        requests=requests,
        first=first,
        end=end,
        cancelled=cancelled,
        overhead=step_model.request_overhead_s,
        max_waiting=max_waiting,
        aborted=aborted,
        mean_batch=sum(r.batch_area for r in reps) / busy if busy > 0 else 0.0,
        frontend_busy=max(r.frontend_busy for r in reps),
        preemptions=sum(r.preemptions for r in reps),
        prefilled=sum(r.prefilled for r in reps),
        steps=sum(r.step for r in reps),
        busy=busy,
        shed=shed,
    )
